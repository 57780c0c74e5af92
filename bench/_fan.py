"""The fan-out benchmark's saga: reserve every item of the input, then a step that may fail.

Sandbox-safe: the workflow sandbox re-imports this module.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from pydantic import BaseModel
from temporalio import activity
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError

from sagaloom import (
    Activity,
    ForEach,
    ItemContext,
    Saga,
    Step,
    StepContext,
    StepDefaults,
    saga_workflow,
)

__all__ = ["FAN", "FanBenchSaga", "finish", "reserve", "unreserve"]

COUNTS: dict[str, int] = {"reserve": 0, "unreserve": 0}
"""Calls made, in this process (the benchmark's check that each item ran, and was undone)."""


class FanInput(BaseModel):
    id: str
    items: int
    fail: bool = False


@activity.defn(name="bench.fan.reserve")
async def reserve(item: str) -> dict[str, str]:
    """Reserve one item (in memory: the benchmark measures the engine)."""
    COUNTS["reserve"] += 1
    return {"ref": f"r-{item}"}


@activity.defn(name="bench.fan.unreserve")
async def unreserve(ref: str) -> None:
    """Release one reservation."""
    COUNTS["unreserve"] += 1


@activity.defn(name="bench.fan.finish")
async def finish(fail: bool) -> None:
    """The step after the fan-out: refuses when asked to, so every item is undone."""
    if fail:
        raise ApplicationError("refused", type="Refused", non_retryable=True)


def _items(ctx: StepContext[FanInput]) -> list[str]:
    return [f"{ctx.input.id}-{n}" for n in range(ctx.input.items)]


def _item(ctx: ItemContext[FanInput]) -> Any:
    return ctx.item


def _ref(ctx: ItemContext[FanInput]) -> Any:
    return ctx.step_output["ref"]


FAN: Saga[FanInput] = Saga(
    name="FanBenchSaga",
    input=FanInput,
    key=lambda i: i.id,
    defaults=StepDefaults(retry=RetryPolicy(maximum_attempts=3,
                                            initial_interval=timedelta(milliseconds=100))),
    steps=[
        Step("reserve", ForEach(items=_items, do=Activity(reserve, arg=_item),
                                compensation=Activity(unreserve, arg=_ref), max_concurrency=50)),
        Step("finish", Activity(finish, arg=lambda c: c.input.fail)),
    ],
)  # fmt: skip
FanBenchSaga = saga_workflow(FAN)
