"""The benchmark's input, step argument and in-process participant activities.

Imports only pydantic and temporalio, so a hand-written workflow can pass it through the
sandbox the way the SDK's samples do (``workflow.unsafe.imports_passed_through``).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from pydantic import BaseModel
from temporalio import activity
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError

STEPS = 4
RETRY = RetryPolicy(initial_interval=timedelta(milliseconds=200), maximum_attempts=3)


class BenchInput(BaseModel):
    """Which step fails (0: none) and how long to wait (timer saga)."""

    id: str
    fail_at: int = 0
    wait_seconds: int = 0


class StepArg(BaseModel):
    """One step's argument."""

    id: str
    step: int
    fail: bool = False


@activity.defn(name="bench.step")
async def bench_step(arg: StepArg) -> dict[str, Any]:
    """A participant call that takes no time; fails for good when told to."""
    if arg.fail:
        raise ApplicationError(f"step {arg.step} refused", type="Refused", non_retryable=True)
    return {"id": f"{arg.id}-{arg.step}"}


@activity.defn(name="bench.undo")
async def bench_undo(arg: StepArg) -> None:
    """A compensation that takes no time."""
