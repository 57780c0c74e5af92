"""Answer-early starts: a caller waits for a step's output, or the saga's end if that is first."""

from __future__ import annotations

from typing import Any

from temporalio import workflow
from temporalio.exceptions import ApplicationError

from sagaloom._runtime._progress import Progress
from sagaloom._saga._model import (
    SAGA_COMPENSATED,
    SAGA_COMPENSATION_FAILED,
    SAGA_ENDED_FIRST,
    SAGA_NEEDS_ATTENTION,
    SagaStatus,
    StepStatus,
)

__all__ = ["EarlyAnswers"]

_UNDECIDED = (SagaStatus.RUNNING, SagaStatus.COMPENSATING)


class EarlyAnswers:
    """Serves the ``wait_for_step`` update from the saga's record."""

    def __init__(self, progress: Progress) -> None:
        self._progress = progress

    def check(self, step: str) -> None:
        """Refuse (before history) a step the saga does not have."""
        if step not in self._progress.saga.position:
            names = ", ".join(s.name for s in self._progress.saga.steps)
            saga = self._progress.saga.name
            raise ValueError(f"wait_for: saga {saga} has no step {step!r} ({names})")

    async def wait(self, step: str) -> Any:
        """The step's output once it is done; the saga's failure if that is decided first.

        Raises:
            ApplicationError: typed as the saga's own failure (``SagaCompensated`` with the
                report as its first detail, ``SagaCompensationFailed`` while parked or after a
                failed compensation), ``SagaNeedsAttention`` while parked, or
                ``SagaEndedFirst``.
        """
        await workflow.wait_condition(lambda: self._answered(step) or self._decided())
        if self._answered(step):
            return self._progress.outputs.get(step)
        state, report = self._progress.state, self._progress.report()
        if state.status is SagaStatus.COMPENSATED:
            raise ApplicationError(
                f"step {state.failed_step} failed first: {state.error}; compensated",
                report,
                type=SAGA_COMPENSATED,
                non_retryable=True,
            )
        if state.status is SagaStatus.NEEDS_ATTENTION:
            raise ApplicationError(
                f"saga needs attention (step {state.parked_step}: {state.error}) before step "
                f"{step} was done",
                report,
                type=SAGA_NEEDS_ATTENTION,
                non_retryable=True,
            )
        if state.status is SagaStatus.FAILED and state.failed_step:
            raise ApplicationError(
                f"step {state.failed_step} failed first: {state.error}; a compensation failed",
                report,
                type=SAGA_COMPENSATION_FAILED,
                non_retryable=True,
            )
        raise ApplicationError(
            f"saga ended {state.status.value} before step {step} was done",
            report,
            type=SAGA_ENDED_FIRST,
            non_retryable=True,
        )

    def _answered(self, step: str) -> bool:
        state = self._progress.state
        done = state.steps[self._progress.saga.position[step]].status is StepStatus.DONE
        # once a later step failed, the caller hears of the failure, not of this step
        return (
            done
            and state.failed_step is None
            and state.status
            in (
                SagaStatus.RUNNING,
                SagaStatus.COMPLETED,
            )
        )

    def _decided(self) -> bool:
        return self._progress.state.status not in _UNDECIDED
