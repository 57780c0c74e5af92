"""Sagas for the fan-out tests: book every item of a list, then one more step, all by plan.

Kept in a module of its own with few imports: the workflow sandbox re-imports it.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from pydantic import BaseModel
from temporalio.common import RetryPolicy

from sagaloom import (
    ForEach,
    Http,
    ItemContext,
    Saga,
    Step,
    StepContext,
    StepDefaults,
    saga_workflow,
)


class Item(BaseModel):
    id: str
    do: str = "ok"
    """What the participant does with it (see ``tests._scripted``)."""
    undo: str = "ok"


class FanPlan(BaseModel):
    run: str
    items: list[Item] = []
    after: str = "ok"
    """What the step after the fan-out does."""


class Booked(BaseModel):
    id: str


def _book(ctx: ItemContext[FanPlan]) -> dict[str, Any]:
    return {"run": ctx.input.run, "do": ctx.item.do, "item": ctx.item_key}


def _unbook(ctx: ItemContext[FanPlan]) -> dict[str, Any]:
    return {
        "run": ctx.input.run,
        "do": ctx.item.undo,
        "item": ctx.item_key,
        "booked": ctx.step_output,
    }


def _after(ctx: StepContext[FanPlan]) -> dict[str, Any]:
    return {"run": ctx.input.run, "do": ctx.input.after}


FAST = RetryPolicy(initial_interval=timedelta(milliseconds=100), maximum_attempts=2)


def fan_saga(name: str, **each: Any) -> Saga[FanPlan]:
    """Book each item (``/book/<id>``, undone by ``/book/<id>/undo``), then ``/after``."""
    return Saga(
        name=name,
        input=FanPlan,
        key=lambda plan: plan.run,
        defaults=StepDefaults(retry=FAST, compensation_retry=FAST),
        steps=[
            Step(
                "book",
                ForEach(
                    items=lambda c: c.input.items,
                    key=lambda item: item.id,
                    do=Http("svc", "POST", lambda c: f"/book/{c.item_key}", body=_book),
                    compensation=Http(
                        "svc", "POST", lambda c: f"/book/{c.item_key}/undo", body=_unbook
                    ),
                    **each,
                ),
                output=Booked,
            ),
            Step("after", Http("svc", "POST", "/after", body=_after)),
        ],
    )


FAN = fan_saga("FanSaga", max_concurrency=3, batch_size=4)
"""Three at a time, in batches of four (so batches are seen in tests of a dozen items)."""
FanSaga = saga_workflow(FAN)

TOLERANT = fan_saga("TolerantFanSaga", max_concurrency=3, tolerate=2)
"""Two items may fail without failing the step."""
TolerantFanSaga = saga_workflow(TOLERANT)

TOLERANT_BATCHED = fan_saga("TolerantBatchedFanSaga", max_concurrency=2, batch_size=4, tolerate=2)
"""Two items may fail, counted across batches of four (two at a time)."""
TolerantBatchedFanSaga = saga_workflow(TOLERANT_BATCHED)

WIDE = fan_saga("WideFanSaga", max_concurrency=64, batch_size=1000)
"""Sixty-four at a time, in batches of a thousand (the payload store's 10,000-item test)."""
WideFanSaga = saga_workflow(WIDE)

FAN_SAGAS = [FanSaga, TolerantFanSaga, TolerantBatchedFanSaga]
