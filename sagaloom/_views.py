"""What ``saga list`` and ``saga show`` print: read from Temporal (visibility and the query)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from temporalio.client import Client, WorkflowExecution, WorkflowExecutionDescription

from sagaloom._model import SagaState, SagaStatus, StepStatus
from sagaloom._names import SAGA_KEY, SAGA_NAME, SAGA_STATUS, SAGA_STEP, compensation_activity_id

__all__ = ["SagaRow", "list_query", "list_sagas", "step_table"]


def list_query(status: str | None = None, saga: str | None = None) -> str:
    """A visibility query over sagas, for the CLI, ``temporal workflow list`` and the Web UI.

    Raises:
        ValueError: for a status that is not a :class:`SagaStatus`.
    """
    clauses = ["SagaName IS NOT NULL"]
    if status:
        try:
            value = SagaStatus(status.upper())
        except ValueError:
            known = ", ".join(s.value.lower() for s in SagaStatus)
            raise ValueError(f"unknown status {status!r}; one of: {known}") from None
        clauses.append(f'SagaStatus = "{value.value}"')
    if saga:
        clauses.append(f'SagaName = "{saga}"')
    return " AND ".join(clauses)


@dataclass(frozen=True)
class SagaRow:
    """One saga in a listing."""

    workflow_id: str
    saga: str
    key: str | None
    status: str
    step: str | None
    started: datetime | None
    closed: datetime | None

    def as_json(self) -> dict[str, Any]:
        """JSON-able form."""
        return {
            "workflow_id": self.workflow_id,
            "saga": self.saga,
            "key": self.key,
            "status": self.status,
            "step": self.step,
            "started": self.started.isoformat() if self.started else None,
            "closed": self.closed.isoformat() if self.closed else None,
        }


def _row(execution: WorkflowExecution) -> SagaRow:
    attrs = execution.typed_search_attributes
    return SagaRow(
        workflow_id=execution.id,
        saga=attrs.get(SAGA_NAME) or execution.workflow_type,
        key=attrs.get(SAGA_KEY),
        status=attrs.get(SAGA_STATUS) or (execution.status.name if execution.status else "?"),
        step=attrs.get(SAGA_STEP),
        started=execution.start_time,
        closed=execution.close_time,
    )


async def list_sagas(client: Client, query: str, limit: int) -> list[SagaRow]:
    """Sagas matching ``query``, newest first, at most ``limit``."""
    rows: list[SagaRow] = []
    async for execution in client.list_workflows(query, limit=limit):
        rows.append(_row(execution))
    return rows


def _duration(start: datetime | None, end: datetime | None) -> str:
    if start is None or end is None:
        return "-"
    return f"{(end - start).total_seconds() * 1000:.0f}ms"


def step_table(state: SagaState, description: WorkflowExecutionDescription | None = None) -> str:
    """The step table of ``saga show``: status, attempts, timing and compensation per step.

    Attempts of a step still running come from the pending activity in ``description``.
    """
    pending = {}
    if description is not None:
        pending = {p.activity_id: p for p in description.raw_description.pending_activities}
    head = f"saga {state.saga}  key={state.key or '-'}  status={state.status.value}"
    if state.failed_step:
        head += f"  failed_step={state.failed_step}"
    if state.parked_step:
        head += f"  PARKED on {state.parked_step}: see saga resolve --help"
    lines = [
        head,
        f"{'#':>2}  {'step':<18} {'kind':<8} {'status':<20} {'tries':>5} {'took':>8}  "
        f"{'compensation':<14} error",
    ]
    for i, step in enumerate(state.steps, 1):
        attempts = step.attempts
        error = step.error or ""
        if step.name in pending:
            attempts = pending[step.name].attempt
            error = error or pending[step.name].last_failure.message
        undo = "-"
        if step.has_compensation:
            live = pending.get(compensation_activity_id(step.name))
            undo = {
                StepStatus.COMPENSATED: "done",
                StepStatus.COMPENSATING: f"running#{live.attempt}" if live else "running",
                StepStatus.COMPENSATION_FAILED: "FAILED",
                StepStatus.COMPENSATION_SKIPPED: "skipped",
            }.get(step.status, "-")
            if step.compensation_error:
                error = (
                    f"{error}; undo: {step.compensation_error}"
                    if error
                    else step.compensation_error
                )
        took = _duration(step.started_at, step.ended_at)
        lines.append(
            f"{i:>2}  {step.name:<18} {step.kind:<8} {step.status.value:<20} "
            f"{attempts or '-':>5} {took:>8}  {undo:<14} {error}"
        )
    for decision in state.decisions:
        lines.append(
            f"    decision {decision.at:%Y-%m-%d %H:%M:%S} {decision.action} {decision.step}"
            f" ({decision.error}){': ' + decision.note if decision.note else ''}"
        )
    return "\n".join(lines)
