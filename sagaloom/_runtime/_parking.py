"""A saga waiting for an operator: parked (NEEDS_ATTENTION) or held (HELD), until ``resolve``.

Three waits share it: a compensation that failed for good (parked: retry, skip, mark it
compensated), a retriable step out of budget (parked: retry, skip) and a forward step whose
``on_failure`` policy holds (held: redrive it, compensate, or mark it done). The operator's
decision arrives through the ``resolve`` update, whose validator refuses one that does not fit;
a decision whose ``id`` was applied already changes nothing, so an operator (or a bulk run) may
send it again.
"""

from __future__ import annotations

import asyncio
from enum import Enum
from typing import Any

from pydantic import ValidationError
from temporalio import workflow

from sagaloom._runtime._progress import Progress
from sagaloom._saga._definition import SagaInputError
from sagaloom._saga._model import Decision, Resolution, SagaState, SagaStatus, StepStatus

__all__ = ["Parking", "Wait"]


class Wait(Enum):
    """What the operator is asked to decide on."""

    COMPENSATION = "compensation"
    """A compensation failed for good: retry, skip, mark_compensated."""
    RETRIABLE = "retriable"
    """A retriable step (after the pivot) is out of budget: retry, skip."""
    HELD = "held"
    """A forward step failed and its policy holds: retry (redrive), compensate, mark_done."""


_ACTIONS = {
    Wait.COMPENSATION: ("retry", "skip", "mark_compensated"),
    Wait.RETRIABLE: ("retry", "skip"),
    Wait.HELD: ("retry", "compensate", "mark_done"),
}


class Parking:
    """One step waiting for an operator at a time, the decision, and the decisions' record."""

    def __init__(self, progress: Progress) -> None:
        self._progress = progress
        self._resolution: Resolution | None = None
        self._wait: Wait | None = None
        self._applied: set[str] = set()
        """Ids of the decisions applied (a repeated one is a no-op)."""
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
            return await self._wait_for(
                name, error, Wait.RETRIABLE if forward else Wait.COMPENSATION
            )

    async def hold(self, name: str, error: str) -> Decision:
        """Wait, HELD at step ``name``, for an operator to redrive, compensate or mark it done."""
        async with self._lock:
            return await self._wait_for(name, error, Wait.HELD)

    async def _wait_for(self, name: str, error: str, wait: Wait) -> Decision:
        progress = self._progress
        state = progress.step(name)
        if wait is Wait.COMPENSATION:
            state.status, state.compensation_error = StepStatus.COMPENSATION_FAILED, error
        else:
            state.status, state.error = StepStatus.FAILED, error
        self._wait = wait
        progress.state.parked_step = name
        held = wait is Wait.HELD
        if held:
            progress.state.failed_step, progress.state.error = name, error
        progress.set_status(SagaStatus.HELD if held else SagaStatus.NEEDS_ATTENTION)
        if progress.metrics is not None and not held:
            progress.metrics.parked()
        self._log(name, error, wait)
        try:
            await workflow.wait_condition(lambda: self._resolution is not None)
        finally:
            if self._resolution is None:  # cancelled (or the deadline) while waiting
                self._wait, progress.state.parked_step = None, None
        assert self._resolution is not None
        resolution, self._resolution = self._resolution, None
        decision = Decision(
            **resolution.model_dump(exclude={"step"}), step=name, at=workflow.now(), error=error
        )
        self._wait, progress.state.parked_step = None, None
        if held:
            progress.state.failed_step = progress.state.error = None
        if resolution.id:
            self._applied.add(resolution.id)
        progress.state.decisions.append(decision)
        progress.set_status(SagaStatus.COMPENSATING if wait is Wait.COMPENSATION else
                            SagaStatus.RUNNING)  # fmt: skip
        return decision

    def _log(self, name: str, error: str, wait: Wait) -> None:
        progress = self._progress
        wid = workflow.info().workflow_id
        if wait is Wait.HELD:
            workflow.logger.error(
                "saga %s %s held at step %s: %s (fix the cause, then: saga redrive %s | saga "
                "compensate %s | saga mark-done %s --step %s --output JSON)",
                progress.saga.name, wid, name, error, wid, wid, wid, name,
            )  # fmt: skip
            return
        what = "step" if wait is Wait.RETRIABLE else "compensation of"
        choices = " | ".join(f"--{a.replace('_', '-')}" for a in _ACTIONS[wait])
        workflow.logger.error(
            "saga %s %s needs attention: %s %s failed for good: %s (resolve with: saga resolve "
            "%s %s %s)",
            progress.saga.name, wid, what, name, error, wid, choices, name,
        )  # fmt: skip

    def check(self, resolution: Resolution) -> None:
        """Refuse a decision that does not fit (the update's validator: never in history).

        Raises:
            ValueError: saying why.
        """
        if resolution.id and resolution.id in self._applied:
            return  # applied already: the handler answers without acting again
        parked, wait = self._progress.state.parked_step, self._wait
        if parked is None or wait is None or self._resolution is not None:
            status = self._progress.state.status
            raise ValueError(f"saga is not waiting for an operator (status {status.value})")
        if resolution.action not in _ACTIONS[wait]:
            what = {Wait.HELD: "held step", Wait.RETRIABLE: "retriable step"}.get(
                wait, "parked compensation"
            )
            raise ValueError(
                f"step {parked!r} is a {what}: {' or '.join(_ACTIONS[wait])} it, not "
                f"{resolution.action}"
            )
        if resolution.step is not None and resolution.step != parked:
            where = "held" if wait is Wait.HELD else "parked"
            raise ValueError(
                f"{resolution.action} must name the {where} step {parked!r}, not "
                f"{resolution.step!r}"
            )
        if resolution.action in ("skip", "mark_compensated", "mark_done") and (
            resolution.step is None
        ):
            raise ValueError(f"{resolution.action} must name the step: {parked!r}")
        if wait is Wait.HELD:
            self._check_held(parked, resolution)
        elif resolution.input is not None or resolution.request_patch is not None:
            raise ValueError("input and request_patch go with a redrive of a held step")

    def _check_held(self, step: str, resolution: Resolution) -> None:
        saga = self._progress.saga
        if resolution.input is not None:
            if resolution.action != "retry":
                raise ValueError("input goes with a redrive")
            try:
                data = saga.parse_input(resolution.input)
            except SagaInputError as err:
                raise ValueError(str(err)) from None
            key = saga.key(data) if saga.key else None
            if key != self._progress.state.key:
                raise ValueError(
                    f"input: the business key cannot change ({self._progress.state.key!r} -> "
                    f"{key!r}): start a new saga for another key"
                )
        if resolution.request_patch is not None and resolution.action != "retry":
            raise ValueError("request_patch goes with a redrive")
        if resolution.action == "mark_done":
            model = saga.steps[saga.position[step]].output
            if model is not None:
                try:
                    model.model_validate(resolution.output)
                except ValidationError as err:
                    first = err.errors()[0]
                    where = ".".join(str(p) for p in first["loc"]) or "<output>"
                    raise ValueError(f"output.{where}: {first['msg']}") from None

    def decide(self, resolution: Resolution) -> SagaState:
        """Take an operator's (validated) decision; a repeated one changes nothing."""
        if resolution.id and resolution.id in self._applied:
            return self._progress.state
        self._resolution = resolution
        return self._progress.state

    def decided_input(self, decision: Decision) -> Any:
        """The saga input a redrive decision carries, parsed (None: unchanged)."""
        if decision.input is None:
            return None
        return self._progress.saga.parse_input(decision.input)
