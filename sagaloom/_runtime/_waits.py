"""A step that waits for its service's breaker instead of spending retries (saga side)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ApplicationError, FailureError

from sagaloom._runtime._progress import Progress
from sagaloom._saga._model import SagaStatus, StepStatus
from sagaloom._saga._outage import (
    OUTAGE_BUDGET_SPENT,
    WAIT_SIGNAL,
    ReleaseNotice,
    WaitRequest,
    breaker_id,
)

__all__ = ["ServiceWaits"]

_ASK_AGAIN = timedelta(minutes=5)
"""How often a waiting step tells its breaker again that it waits (a breaker that was reset or
terminated meanwhile is then noticed: the step goes on)."""


class ServiceWaits:
    """Steps waiting for services: each tells the breaker, then waits for its word."""

    def __init__(self, progress: Progress) -> None:
        self._progress = progress
        self._notices: dict[tuple[str, str], ReleaseNotice] = {}
        self._waiting: set[str] = set()

    def take(self, notice: ReleaseNotice) -> None:
        """The breaker's word for one step (the ``service_released`` signal)."""
        self._notices[(notice.service, notice.step)] = notice

    async def wait(
        self, step: str, service: str, *, until: Callable[[], bool] | None = None
    ) -> None:
        """Wait until ``service``'s breaker lets ``step`` call again.

        Args:
            step: The waiting step.
            service: Its service.
            until: Stop waiting early when this turns true (a late reply came meanwhile).

        Raises:
            ApplicationError: ``OutageBudgetSpent`` when the breaker says to give up.
        """
        progress, key = self._progress, (service, step)
        self._notices.pop(key, None)  # a word meant for an earlier wait that ended early
        done = until or (lambda: False)
        state = progress.step(step)
        state.status, state.waiting_for = StepStatus.WAITING, service
        self._waiting.add(step)
        if progress.state.status is SagaStatus.RUNNING:
            progress.set_status(SagaStatus.WAITING)
        progress.waiting(step, service)
        request = WaitRequest(workflow_id=workflow.info().workflow_id, step=step)
        queue = workflow.info().task_queue  # the app's breaker: one per service and task queue
        handle = workflow.get_external_workflow_handle(breaker_id(service, queue))
        try:
            while True:
                try:
                    await handle.signal(WAIT_SIGNAL, request)
                except FailureError:
                    return  # no breaker (any more): call again
                try:
                    await workflow.wait_condition(
                        lambda: key in self._notices or done(), timeout=_ASK_AGAIN
                    )
                    break
                except TimeoutError:  # tell it again (idempotent): it may have been reset
                    continue
            notice = self._notices.pop(key, None)
            if notice is not None and not notice.go:
                raise ApplicationError(notice.reason, type=OUTAGE_BUDGET_SPENT)
        finally:
            self._waiting.discard(step)
            state.status, state.waiting_for = StepStatus.RUNNING, None
            if not self._waiting and progress.state.status is SagaStatus.WAITING:
                progress.set_status(SagaStatus.RUNNING)
            progress.publish()
