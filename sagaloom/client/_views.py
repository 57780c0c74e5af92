"""What ``saga list`` and ``saga show`` print: read from Temporal (visibility and the query)."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import ValidationError
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import (
    Client,
    WorkflowExecution,
    WorkflowExecutionDescription,
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowHandle,
    WorkflowQueryFailedError,
)
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError

from sagaloom._saga._fanout_rules import BatchResult, ItemBatch, ItemResult, ItemStatus
from sagaloom._saga._model import SagaReport, SagaState, SagaStatus, StepStatus
from sagaloom._wire._names import (
    HOLD_PREFIX,
    ITEMS_WORKFLOW,
    SAGA_KEY,
    SAGA_NAME,
    SAGA_STATUS,
    SAGA_STEP,
    STATE_QUERY,
    compensation_activity_id,
    items_batch_id,
)
from sagaloom.client._history import by_execution, state_from_history

__all__ = ["ItemRow", "SagaRow", "item_rows", "list_query", "list_sagas", "read_saga", "step_table"]


_STATUS_QUERY = {
    # a saga on the happy path has no SagaStatus: its execution status says where it is
    SagaStatus.RUNNING: (
        'ExecutionStatus = "Running" AND (SagaStatus IS NULL OR SagaStatus IN ("RUNNING", '
        '"WAITING"))'
    ),
    SagaStatus.COMPLETED: 'ExecutionStatus = "Completed"',
}


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
        clauses.append(_STATUS_QUERY.get(value, f'SagaStatus = "{value.value}"'))
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
        status=attrs.get(SAGA_STATUS) or by_execution(execution.status),
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
    if state.parked_step and state.status is SagaStatus.HELD:
        head += (
            f"  HELD at {state.parked_step}: saga redrive | saga compensate | saga mark-done"
            f" --step {state.parked_step}"
        )
    elif state.parked_step:
        head += f"  PARKED on {state.parked_step}: see saga resolve --help"
    if state.waiting_for_key:
        head += f"  waits for key {state.waiting_for_key} (held by {state.key_holder or '?'})"
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
        status = step.status.value
        if step.waiting_for and step.waiting_for.startswith(HOLD_PREFIX):
            status = "held-before"
            error = f"held before it by an operator (saga release --step {step.name})"
        elif step.waiting_for:
            status = f"waiting:{step.waiting_for}"
            error = f"waits for service {step.waiting_for} (breaker open); {error}".rstrip("; ")
        lines.append(
            f"{i:>2}  {step.name:<18} {step.kind:<8} {status:<20} "
            f"{attempts or '-':>5} {took:>8}  {undo:<14} {error}"
        )
        if step.items is not None:
            items = step.items
            counts = [f"{items.done}/{items.total} done"] + [
                f"{n} {what}"
                for n, what in ((items.failed, "failed"), (items.running, "running"),
                                (items.undone, "undone"))
                if n
            ]  # fmt: skip
            lines.append(f"    items: {' · '.join(counts)}")
            lines += [f"    failed item {f}" for f in items.failures[:5]]
            if items.failed > 5:
                lines.append(f"    ... and {items.failed - 5} more: saga show --items")
    for decision in state.decisions:
        lines.append(
            f"    decision {decision.at:%Y-%m-%d %H:%M:%S} {decision.action} {decision.step}"
            f"{' by ' + decision.by if decision.by else ''}"
            f" ({decision.error}){': ' + decision.note if decision.note else ''}"
        )
    return "\n".join(lines)


@dataclass(frozen=True)
class ItemRow:
    """One item of a fan-out step, as ``saga show --items`` lists it."""

    step: str
    index: int
    key: str
    status: str
    """How its forward call ended (``done``, ``failed``, ``refused``, ``cancelled``,
    ``not_started``)."""
    undo: str
    """How its compensation ended (``undone``, ``undo_failed``), or ``-``."""
    error: str | None
    output: Any

    def as_json(self) -> dict[str, Any]:
        """The row as JSON."""
        return {
            "step": self.step,
            "index": self.index,
            "key": self.key,
            "status": self.status,
            "undo": self.undo,
            "error": self.error,
            "output": self.output,
        }


async def item_rows(client: Client, workflow_id: str, state: SagaState) -> list[ItemRow]:
    """Every item of the saga's fan-out steps, however the saga ended.

    Read from the step's batch workflows: a batch's first run did its items (its result says
    how each ended), the later runs under its id undid them. A batch that ended without a
    result (terminated) lists its items as ``cancelled`` (each may have taken effect); a batch
    still running lists them as ``running``; items of batches never started are
    ``not_started`` (their keys are known only to the saga: shown as ``-``).

    Raises:
        ValueError: the workflow id or a step name holds a quote or a backslash (it would not
            stay a literal in the visibility query).
    """
    if any(ch in workflow_id + "".join(s.name for s in state.steps) for ch in "\"'\\"):
        raise ValueError("--items: the workflow id or a step name holds a quote or a backslash")
    rows: list[ItemRow] = []
    for step in state.steps:
        if step.items is None:
            continue
        listed: set[int] = set()
        number = 0
        while True:
            batch_id = items_batch_id(workflow_id, step.name, number)
            runs = [
                r
                async for r in client.list_workflows(
                    f'WorkflowId = "{batch_id}" AND WorkflowType = "{ITEMS_WORKFLOW}"'
                )
            ]
            if not runs:
                break
            runs.sort(key=lambda r: r.start_time)
            forward, undo = await _batch_items(client, runs)
            for index in sorted(forward):
                item = forward[index]
                back = undo.get(index)
                listed.add(index)
                rows.append(
                    ItemRow(
                        step=step.name,
                        index=index,
                        key=item.key,
                        status=item.status.value,
                        undo=back.status.value if back else "-",
                        error=(back.error if back and back.error else item.error),
                        output=item.output,
                    )
                )
            number += 1
        rows += [
            ItemRow(step.name, index, "-", ItemStatus.NOT_STARTED.value, "-", None, None)
            for index in range(step.items.total)
            if index not in listed
        ]
    return rows


async def _batch_items(
    client: Client, runs: list[WorkflowExecution]
) -> tuple[dict[int, ItemResult], dict[int, ItemResult]]:
    """How each item of one batch went forward (its first run) and back (the later runs)."""
    forward: dict[int, ItemResult] = {}
    undo: dict[int, ItemResult] = {}
    for n, run in enumerate(runs):
        if run.status is WorkflowExecutionStatus.COMPLETED:
            handle = client.get_workflow_handle(run.id, run_id=run.run_id, result_type=BatchResult)
            result = await handle.result()
            for item in result.items:
                if n == 0:
                    forward[item.index] = item
                elif item.status is not ItemStatus.NOT_STARTED:
                    undo[item.index] = item
            continue
        if n > 0:
            continue  # an undo that did not report: the saga parked on it and says so
        # no result: list its items from its input, each as it may have gone
        batch = await _batch_input(client, run)
        running = run.status is WorkflowExecutionStatus.RUNNING
        how = run.status.name.lower() if run.status else "closed"
        for call in batch.calls if batch is not None else []:
            forward[call.index] = ItemResult(
                index=call.index,
                key=call.key,
                status=ItemStatus.RUNNING if running else ItemStatus.CANCELLED,
                error=None if running else f"its batch ended without reporting ({how})",
            )
    return forward, undo


async def _batch_input(client: Client, run: WorkflowExecution) -> ItemBatch | None:
    """The calls a batch was started with (the input of its first event)."""
    handle = client.get_workflow_handle(run.id, run_id=run.run_id)
    async for event in handle.fetch_history_events():
        started = event.workflow_execution_started_event_attributes
        values = await client.data_converter.decode(list(started.input.payloads), [ItemBatch])
        return values[0] if values else None
    return None


async def read_saga(
    client: Client, workflow_id: str
) -> tuple[SagaState, WorkflowExecutionDescription, str]:
    """A saga's state for ``saga show``, with or without a worker running.

    Running: the live ``saga_state`` query; when no worker answers it, what the history says.
    Finished: its report — the result of a completed saga, the failure details of a compensated
    or failed one — read from Temporal alone; a cancelled or terminated one from its history.

    Returns:
        The state, the execution's description, and where the state came from (``live``,
        ``report`` or ``history``).
    """
    handle = client.get_workflow_handle(workflow_id, result_type=SagaReport)
    description = await handle.describe()
    if description.status is WorkflowExecutionStatus.RUNNING:
        if not await _polled(client, description.task_queue):  # no worker: do not wait for one
            return (
                await state_from_history(handle, description, client.data_converter),
                description,
                "history",
            )
        try:
            state = await handle.query(
                STATE_QUERY, result_type=SagaState, rpc_timeout=timedelta(seconds=5)
            )
            return state, description, "live"
        except (RPCError, WorkflowQueryFailedError):
            return (
                await state_from_history(handle, description, client.data_converter),
                description,
                "history",
            )
    try:
        report = await handle.result()
        return report.state(), description, "report"
    except WorkflowFailureError as err:
        cause = err.cause
        if isinstance(cause, ApplicationError) and cause.details:
            with contextlib.suppress(ValidationError, TypeError):
                report = SagaReport.model_validate(cause.details[0])
                if report.steps:
                    return report.state(), description, "report"
    return (
        await state_from_history(handle, description, client.data_converter),
        description,
        "history",
    )


async def _history(
    client: Client, handle: WorkflowHandle[Any, Any], description: WorkflowExecutionDescription
) -> SagaState:
    return await state_from_history(handle, description, client.data_converter)


async def _polled(client: Client, task_queue: str | None) -> bool:
    """Whether a worker polled ``task_queue`` for workflow tasks in the last minute."""
    if not task_queue:
        return True
    try:
        response = await client.workflow_service.describe_task_queue(
            DescribeTaskQueueRequest(
                namespace=client.namespace,
                task_queue=TaskQueue(name=task_queue),
                task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
            ),
            timeout=timedelta(seconds=5),
        )
    except RPCError:
        return True  # cannot tell: ask the query
    now = datetime.now(UTC).timestamp()
    return any(now - p.last_access_time.seconds < 60 for p in response.pollers)
