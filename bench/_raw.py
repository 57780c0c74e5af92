"""The benchmark saga written by hand with the raw SDK, as a team would without sagaloom."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from bench._models import RETRY, STEPS, BenchInput, StepArg, bench_step, bench_undo

__all__ = ["RawSaga"]


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
