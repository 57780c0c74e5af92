"""A saga's step table read from its history alone: for sagas no worker can answer for.

A cancelled or terminated saga leaves no report, and a running one whose workers are down
answers no query; its history still says what ran. Each of the saga's actions leaves events
under an id the runtime chose, named after its step:

* an activity (HTTP call, your activity, a command's send or ask): activity id ``<step>`` or
  ``<step>:compensate`` (a command's ask adds ``:ask``); a local activity records the same id
  in its marker;
* a timer: its summary ``step <n>/<total> <step>``;
* a child saga: child workflow id ``<saga id>:<step>``;
* a fan-out's batch: child workflow ``sagaloom.Items`` with id ``<saga id>:<step>:items-<n>``,
  whose input says how many items the step has and whose result how each ended.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

from temporalio.api.common.v1 import Payload
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import (
    WorkflowExecutionDescription,
    WorkflowExecutionStatus,
    WorkflowHandle,
)
from temporalio.converter import DataConverter

from sagaloom._saga._fanout_rules import BatchResult, ItemBatch, ItemCounts, ItemResult, ItemStatus
from sagaloom._saga._model import SagaState, SagaStatus, StepState, StepStatus
from sagaloom._wire._names import (
    ASK_SUFFIX,
    COMPENSATE_SUFFIX,
    ITEMS_WORKFLOW,
    SAGA_KEY,
    SAGA_NAME,
    step_of_key,
)
from sagaloom._wire._names import SAGA_STATUS as SAGA_STATUS_ATTRIBUTE

__all__ = ["by_execution", "saga_status", "state_from_history"]

_ENDED_AS_FAILED = (SagaStatus.COMPENSATED.value, SagaStatus.FAILED.value)
_TIMER_SUMMARY = re.compile(r"step \d+/\d+ (?P<step>\S+)$")
_BATCH = re.compile(r":(?P<step>[^:]+):items-(?P<number>\d+)$")
_LOCAL_ACTIVITY = "core_local_activity"
_NOT_A_STEP = ":down"


_BY_EXECUTION = {
    WorkflowExecutionStatus.RUNNING: SagaStatus.RUNNING,
    WorkflowExecutionStatus.COMPLETED: SagaStatus.COMPLETED,
    WorkflowExecutionStatus.CANCELED: SagaStatus.CANCELED,
}


def by_execution(status: WorkflowExecutionStatus | None) -> SagaStatus:
    """The saga status an execution status implies (for sagas without a ``SagaStatus``)."""
    return _BY_EXECUTION.get(status or WorkflowExecutionStatus.RUNNING, SagaStatus.FAILED)


def saga_status(description: WorkflowExecutionDescription) -> SagaStatus:
    """A saga's status from its execution and its ``SagaStatus`` search attribute."""
    closed = by_execution(description.status)
    live = description.typed_search_attributes.get(SAGA_STATUS_ATTRIBUTE)
    if closed is SagaStatus.RUNNING and live:
        return SagaStatus(live)
    if closed is SagaStatus.FAILED and live in _ENDED_AS_FAILED:
        return SagaStatus(live)  # a failed run that compensated says so; else (terminated) FAILED
    return closed


class _Reader:
    """Folds a saga's history events into step states, in the order the steps first appear."""

    def __init__(self, saga_id: str, converter: DataConverter) -> None:
        self._converter = converter
        self._prefix = f"{saga_id}:"
        self.steps: dict[str, StepState] = {}
        self._activities: dict[int, str] = {}  # scheduled event id -> activity id
        self._timers: dict[str, str] = {}  # timer id -> step
        self._children: dict[int, tuple[str, ItemBatch | None]] = {}  # initiated id -> step
        self._batches: dict[str, dict[int, Any]] = {}  # step -> item index -> forward result
        self._undone: dict[str, set[int]] = {}
        self._running: dict[str, int] = {}  # step -> items of its batches still open
        self._totals: dict[str, int] = {}

    def _step(self, name: str, kind: str) -> StepState:
        return self.steps.setdefault(name, StepState(name=name, kind=kind))

    async def _decode(self, payloads: Any, kind: type[Any]) -> Any:
        values = await self._converter.decode(list(payloads), [kind])
        return values[0] if values else None

    async def take(self, event: HistoryEvent) -> None:
        kind = event.WhichOneof("attributes")
        at = event.event_time.ToDatetime(UTC)
        if kind == "activity_task_scheduled_event_attributes":
            activity_id = event.activity_task_scheduled_event_attributes.activity_id
            self._activities[event.event_id] = activity_id
            self._began(activity_id, "activity", at)
        elif kind in _ACTIVITY_ENDINGS:
            ending = getattr(event, kind)
            activity_id = self._activities.get(ending.scheduled_event_id, "")
            failure = getattr(ending, "failure", None)
            error = failure.message if failure is not None and failure.message else None
            self._ended(activity_id, _ACTIVITY_ENDINGS[kind], error, at)
        elif kind == "marker_recorded_event_attributes":
            self._local_activity(event, at)
        elif kind == "timer_started_event_attributes":
            summary = await self._summary(event.user_metadata.summary)
            found = _TIMER_SUMMARY.match(summary or "")
            if found:
                self._timers[event.timer_started_event_attributes.timer_id] = found["step"]
                self._began(found["step"], "timer", at)
        elif kind in ("timer_fired_event_attributes", "timer_canceled_event_attributes"):
            step = self._timers.get(getattr(event, kind).timer_id)
            if step is not None:
                fired = kind == "timer_fired_event_attributes"
                self._ended(step, fired, None if fired else "cancelled", at)
        elif kind == "start_child_workflow_execution_initiated_event_attributes":
            await self._child_started(event, at)
        elif kind in _CHILD_ENDINGS:
            await self._child_ended(event, kind, at)

    def _began(self, activity_id: str, kind: str, at: datetime) -> None:
        name, undo = _step_of(activity_id)
        if not name or name.isdigit() or name.endswith(_NOT_A_STEP):
            return  # an engine activity of no step (events, keys), or a breaker's check
        step = self._step(name, kind)
        if not undo:
            step.status, step.started_at = StepStatus.RUNNING, step.started_at or at
        else:
            step.has_compensation, step.status = True, StepStatus.COMPENSATING

    def _ended(self, activity_id: str, ok: bool, error: str | None, at: datetime) -> None:
        name, undo = _step_of(activity_id)
        step = self.steps.get(name)
        if step is None:
            return
        if not undo:
            step.status = StepStatus.DONE if ok else StepStatus.FAILED
            step.error, step.ended_at = error, at
        else:
            step.status = StepStatus.COMPENSATED if ok else StepStatus.COMPENSATION_FAILED
            step.compensation_error = error

    def _local_activity(self, event: HistoryEvent, at: datetime) -> None:
        marker = event.marker_recorded_event_attributes
        if marker.marker_name != _LOCAL_ACTIVITY or "data" not in marker.details:
            return
        try:
            data = json.loads(marker.details["data"].payloads[0].data)
        except (ValueError, IndexError):
            return
        activity_id = str(data.get("activity_id", ""))
        self._began(activity_id, "activity", at)
        failed = marker.HasField("failure")
        self._ended(activity_id, not failed, marker.failure.message if failed else None, at)

    async def _summary(self, payload: Payload) -> str | None:
        if not payload.data:
            return None
        try:
            value = await self._decode([payload], str)
        except Exception:  # a summary this client cannot decode (another codec): no step
            return None
        return value if isinstance(value, str) else None

    async def _child_started(self, event: HistoryEvent, at: datetime) -> None:
        started = event.start_child_workflow_execution_initiated_event_attributes
        child_id = started.workflow_id
        if not child_id.startswith(self._prefix):
            return
        if started.workflow_type.name == ITEMS_WORKFLOW:
            found = _BATCH.search(child_id)
            if found is None:
                return
            name = found["step"]
            batch = await self._decode(started.input.payloads, ItemBatch)
            step = self._step(name, "for-each")
            self._children[event.event_id] = (name, batch)
            if batch is None:
                return
            self._totals[name] = max(self._totals.get(name, 0), batch.total)
            if batch.undo:
                step.has_compensation, step.status = True, StepStatus.COMPENSATING
            else:
                step.status, step.started_at = StepStatus.RUNNING, step.started_at or at
                self._running[name] = self._running.get(name, 0) + len(batch.calls)
            self._count(name)
            return
        name = child_id[len(self._prefix) :]
        step = self._step(name, "saga")
        step.has_compensation = True
        step.status, step.started_at = StepStatus.RUNNING, at
        self._children[event.event_id] = (name, None)

    async def _child_ended(self, event: HistoryEvent, kind: str, at: datetime) -> None:
        ending = getattr(event, kind)
        name, batch = self._children.get(ending.initiated_event_id, ("", None))
        step = self.steps.get(name)
        if step is None:
            return
        ok = kind == "child_workflow_execution_completed_event_attributes"
        failure = getattr(ending, "failure", None)
        error = failure.message if failure is not None and failure.message else None
        if batch is None:  # a child saga: it ends when its parent's decision is carried out
            if step.status is StepStatus.RUNNING:
                step.status = StepStatus.DONE if ok else StepStatus.FAILED
                step.error, step.ended_at = error, at
            return
        result = await self._decode(ending.result.payloads, BatchResult) if ok else None
        if not batch.undo:
            self._running[name] -= len(batch.calls)
            forward = self._batches.setdefault(name, {})
            for item in result.items if result is not None else []:
                forward[item.index] = item
            if result is None:  # ended without reporting: each of its items may have run
                for call in batch.calls:
                    forward[call.index] = _lost(call.index, call.key, kind)
        elif result is not None:
            undone = self._undone.setdefault(name, set())
            undone |= {r.index for r in result.items if r.status is ItemStatus.UNDONE}
        self._count(name)

    def _count(self, name: str) -> None:
        results = list(self._batches.get(name, {}).values())
        failed = [r for r in results if r.status in (ItemStatus.FAILED, ItemStatus.REFUSED)]
        step = self.steps[name]
        step.items = ItemCounts(
            total=self._totals.get(name, 0),
            done=sum(r.status is ItemStatus.DONE for r in results),
            failed=len(failed),
            running=max(self._running.get(name, 0), 0),
            undone=len(self._undone.get(name, set())),
            failures=[f"{r.key}: {r.error}" for r in failed[:20]],
        )
        if self._running.get(name, 0) <= 0 and step.status is StepStatus.RUNNING:
            lost = any(r.status is ItemStatus.CANCELLED for r in results)
            step.status = StepStatus.FAILED if failed or lost else step.status

    def finish(self, status: SagaStatus) -> None:
        """What the end of the history says of steps still open."""
        if status is SagaStatus.RUNNING:
            return
        for step in self.steps.values():
            if step.status is StepStatus.RUNNING and status is not SagaStatus.COMPLETED:
                step.status, step.error = StepStatus.FAILED, step.error or "cancelled"
            if step.items is not None:
                step.items.running = 0


def _step_of(activity_id: str) -> tuple[str, bool]:
    """The step an activity id names, and whether it is the step's undo.

    A command's ask (``<step>:ask``) counts as its step's action.
    """
    activity_id = activity_id.removesuffix(f":{ASK_SUFFIX}")
    name = activity_id.removesuffix(f":{COMPENSATE_SUFFIX}")
    return step_of_key(name), name != activity_id  # a redrive's new key names its step too


def _lost(index: int, key: str, kind: str) -> ItemResult:
    how = kind.removeprefix("child_workflow_execution_").removesuffix("_event_attributes")
    return ItemResult(
        index=index,
        key=key,
        status=ItemStatus.CANCELLED,
        error=f"its batch ended without reporting ({how})",
    )


async def state_from_history(
    handle: WorkflowHandle[Any, Any],
    description: WorkflowExecutionDescription,
    converter: DataConverter,
) -> SagaState:
    """The step table as far as the history tells, whatever ended the saga.

    Args:
        handle: The saga's handle.
        description: Its description (status and search attributes).
        converter: The client's data converter (it decodes batch inputs and results).
    """
    attrs = description.typed_search_attributes
    status = saga_status(description)
    reader = _Reader(handle.id, converter)
    async for event in handle.fetch_history_events():
        await reader.take(event)
    reader.finish(status)
    return SagaState(
        saga=attrs.get(SAGA_NAME) or description.workflow_type,
        key=attrs.get(SAGA_KEY),
        status=status,
        steps=list(reader.steps.values()),
    )


_ACTIVITY_ENDINGS = {
    "activity_task_completed_event_attributes": True,
    "activity_task_failed_event_attributes": False,
    "activity_task_timed_out_event_attributes": False,
    "activity_task_canceled_event_attributes": False,
}
_CHILD_ENDINGS = (
    "child_workflow_execution_completed_event_attributes",
    "child_workflow_execution_failed_event_attributes",
    "child_workflow_execution_canceled_event_attributes",
    "child_workflow_execution_terminated_event_attributes",
    "child_workflow_execution_timed_out_event_attributes",
    "start_child_workflow_execution_failed_event_attributes",
)
