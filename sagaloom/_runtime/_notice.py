"""Telling participants that a saga ended: a small workflow of its own, so the saga ends at once.

A saga with ``notify_participants`` starts it as it ends (an abandoned child: it outlives the
saga). It tells each HTTP service the saga called, in turn — ``POST /sagaloom/saga-ended``, the
usual ``Idempotency-Key`` (``<saga id>:sagaloom-ended:<service>``) and token — retrying with
back-off for up to a week while the service is down. A refusal (4xx) means the service keeps
nothing for sagas (it has no such endpoint): it was told.
"""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel
from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

from sagaloom._runtime._progress import Progress
from sagaloom._saga._definition import Http, step_actions
from sagaloom._saga._model import HttpRequest, HttpResponse, StepStatus
from sagaloom._wire._names import (
    END_NOTICE_PATH,
    END_NOTICE_SUFFIX,
    END_NOTICE_WORKFLOW,
    HTTP_ACTIVITY,
)

__all__ = ["EndNotice", "SagaEnded", "notify_end"]

_PATIENCE = RetryPolicy(
    initial_interval=timedelta(seconds=1), maximum_interval=timedelta(minutes=5)
)


class SagaEnded(BaseModel):
    """What the participants are told."""

    saga_id: str
    status: str
    services: list[str]


@workflow.defn(name=END_NOTICE_WORKFLOW)
class EndNotice:
    """Tells each service that the saga ended; done once each has answered."""

    @workflow.run
    async def run(self, ended: SagaEnded) -> list[str]:
        """Tell every service; return those that never answered within a week."""
        missed = []
        for service in ended.services:
            request = HttpRequest(
                service=service,
                method="POST",
                path=END_NOTICE_PATH,
                body={"saga_id": ended.saga_id, "status": ended.status},
            )
            try:
                await workflow.execute_activity(
                    HTTP_ACTIVITY,
                    request,
                    result_type=HttpResponse,
                    activity_id=service,
                    summary=f"saga {ended.status.lower()}: tell {service}",
                    start_to_close_timeout=timedelta(seconds=30),
                    schedule_to_close_timeout=timedelta(days=7),
                    retry_policy=_PATIENCE,
                )
            except ActivityError as err:
                cause = err.cause
                refused = isinstance(cause, ApplicationError) and cause.non_retryable
                if not refused:  # a refusal (4xx): told, it keeps nothing for sagas
                    missed.append(service)
                    workflow.logger.warning("could not tell %s that saga %s ended: %s",
                                            service, ended.saga_id, err.cause or err)  # fmt: skip
        return missed


async def notify_end(progress: Progress) -> None:
    """As the saga ends: start its notice (a child it abandons) when it asks for one.

    The services told are those of the HTTP steps that started (forward or undo). Never fails
    the saga: a notice that cannot start is logged.
    """
    saga = progress.saga
    if not saga.notify_participants:
        return
    services: list[str] = []
    for step in saga.steps:
        if progress.step(step.name).status in (StepStatus.PENDING, StepStatus.SKIPPED):
            continue
        for part in step_actions(step):
            if isinstance(part, Http) and part.service not in services:
                services.append(part.service)
    if not services:
        return
    saga_id = workflow.info().workflow_id
    ended = SagaEnded(saga_id=saga_id, status=progress.state.status.value, services=services)
    try:
        await workflow.start_child_workflow(
            END_NOTICE_WORKFLOW,
            ended,
            id=f"{saga_id}:{END_NOTICE_SUFFIX}",
            parent_close_policy=workflow.ParentClosePolicy.ABANDON,
            static_summary=f"tell {', '.join(services)} that saga {saga_id} ended",
        )
    except Exception as err:  # already told (a reset), or the server refused: say so, end
        workflow.logger.warning("saga %s: participants not told it ended: %s", saga_id, err)
