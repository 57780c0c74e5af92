"""The benchmark's saga shape: 4 in-process steps, a share failing at the last and compensating.

The same shape three ways: the engine (regular activities), the engine's fast path (local
activities), and a hand-written Temporal workflow. Also a saga that waits on a timer, for the
memory scenario. Sandbox-safe: the workflow sandbox re-imports this module.
"""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from typing import Any

from pydantic import BaseModel
from temporalio import activity, workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

from sagaloom import Activity, Saga, Step, StepDefaults, Timer, saga_workflow

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


def _arg(step: int) -> Any:
    return lambda c: StepArg(id=c.input.id, step=step, fail=c.input.fail_at == step)


def _steps() -> list[Step]:
    return [
        Step(
            f"step-{i}",
            Activity(bench_step, arg=_arg(i)),
            compensation=Activity(bench_undo, arg=_arg(i)),
        )
        for i in range(1, STEPS + 1)
    ]


BENCH = Saga(
    name="BenchSaga",
    input=BenchInput,
    key=lambda b: b.id,
    description="Benchmark: 4 steps",
    track_steps=True,
    defaults=StepDefaults(retry=RETRY),
    steps=_steps(),
)
BenchSaga = saga_workflow(BENCH)

BENCH_LEAN = dataclasses.replace(BENCH, name="BenchLeanSaga", track_steps=False)  # the default
BenchLeanSaga = saga_workflow(BENCH_LEAN)

BENCH_FAST = dataclasses.replace(
    BENCH, name="BenchFastSaga", local_activities=True, track_steps=False
)
BenchFastSaga = saga_workflow(BENCH_FAST)

BENCH_WAIT = Saga(
    name="BenchWaitSaga",
    input=BenchInput,
    key=lambda b: b.id,
    description="Benchmark: a long wait, then a step",
    defaults=StepDefaults(retry=RETRY, schedule_to_close=timedelta(hours=2)),
    steps=[
        Step("wait", Timer(lambda c: timedelta(seconds=c.input.wait_seconds))),
        Step(
            "last",
            Activity(bench_step, arg=_arg(2)),
            compensation=Activity(bench_undo, arg=_arg(2)),
        ),
    ],
)
BenchWaitSaga = saga_workflow(BENCH_WAIT)


@workflow.defn(name="RawSaga")
class RawSaga:
    """The same 4-step saga written by hand with the raw SDK: try, compensate, raise."""

    @workflow.run
    async def run(self, data: BenchInput) -> dict[str, Any]:
        """Run the steps; on a failure undo the started ones in reverse and fail."""
        started: list[StepArg] = []
        outputs: dict[str, Any] = {}
        try:
            for i in range(1, STEPS + 1):
                arg = StepArg(id=data.id, step=i, fail=data.fail_at == i)
                started.append(arg)
                outputs[f"step-{i}"] = await workflow.execute_activity(
                    bench_step,
                    arg,
                    start_to_close_timeout=timedelta(seconds=30),
                    retry_policy=RETRY,
                )
        except ActivityError as err:
            for arg in reversed(started):
                await workflow.execute_activity(
                    bench_undo, arg, start_to_close_timeout=timedelta(seconds=30)
                )
            raise ApplicationError(
                "compensated", type="SagaCompensated", non_retryable=True
            ) from err
        return outputs


WORKFLOWS = [BenchSaga, BenchLeanSaga, BenchFastSaga, BenchWaitSaga, RawSaga]
SAGA_DEFS = [BENCH, BENCH_LEAN, BENCH_FAST, BENCH_WAIT]
ACTIVITIES = [bench_step, bench_undo]
