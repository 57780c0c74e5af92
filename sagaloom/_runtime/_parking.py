"""Parking a saga for an operator: NEEDS_ATTENTION until the ``resolve`` update decides."""

from __future__ import annotations

import asyncio

from temporalio import workflow

from sagaloom._model import Decision, Resolution, SagaState, SagaStatus, StepStatus
from sagaloom._runtime._progress import Progress

__all__ = ["Parking"]


class Parking:
    """One parked step at a time, its operator's decision, and the decisions' record."""

    def __init__(self, progress: Progress) -> None:
        self._progress = progress
        self._resolution: Resolution | None = None
        self._forward = False
        self._lock = asyncio.Lock()

    async def park(self, name: str, error: str, *, forward: bool = False) -> Decision:
        """Wait, parked in NEEDS_ATTENTION, for an operator's decision on step ``name``.

        Args:
            name: The step.
            error: Why it failed for good.
            forward: A retriable step ran out of budget (retry or skip it); otherwise its
                compensation did (retry, skip, or mark it compensated).
        """
        async with self._lock:
            return await self._park_one(name, error, forward=forward)

    async def _park_one(self, name: str, error: str, *, forward: bool) -> Decision:
        progress = self._progress
        state = progress.step(name)
        if forward:
            state.status, state.error = StepStatus.FAILED, error
        else:
            state.status, state.compensation_error = StepStatus.COMPENSATION_FAILED, error
        self._forward = forward
        progress.state.parked_step = name
        progress.set_status(SagaStatus.NEEDS_ATTENTION)
        if progress.metrics is not None:
            progress.metrics.parked()
        wid = workflow.info().workflow_id
        what = "step" if forward else "compensation of"
        choices = "--retry | --skip" if forward else "--retry | --skip | --mark-compensated"
        workflow.logger.error(
            "saga %s %s needs attention: %s %s failed for good: %s (resolve with: saga resolve "
            "%s %s %s)",
            progress.saga.name,
            wid,
            what,
            name,
            error,
            wid,
            choices,
            name,
        )
        await workflow.wait_condition(lambda: self._resolution is not None)
        assert self._resolution is not None
        decision = Decision(
            **self._resolution.model_dump(exclude={"step"}),
            step=name,
            at=workflow.now(),
            error=error,
        )
        self._resolution = None
        progress.state.parked_step = None
        progress.state.decisions.append(decision)
        progress.set_status(SagaStatus.RUNNING if forward else SagaStatus.COMPENSATING)
        return decision

    def check(self, resolution: Resolution) -> None:
        """Refuse a decision that does not fit (the update's validator: never in history).

        Raises:
            ValueError: saying why.
        """
        parked = self._progress.state.parked_step
        if parked is None or self._resolution is not None:
            status = self._progress.state.status
            raise ValueError(f"saga is not waiting for an operator (status {status})")
        if self._forward and resolution.action == "mark_compensated":
            raise ValueError(f"step {parked!r} is a retriable step: retry or skip it")
        if resolution.action != "retry" and resolution.step != parked:
            raise ValueError(
                f"{resolution.action} must name the parked step {parked!r}, not {resolution.step!r}"
            )

    def decide(self, resolution: Resolution) -> SagaState:
        """Take an operator's (validated) decision."""
        self._resolution = resolution
        return self._progress.state
