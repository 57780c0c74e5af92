"""What a saga run knows about itself: live state, outputs, compensations, metrics, attributes."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from temporalio import workflow
from temporalio.common import SearchAttributeUpdate

from sagaloom._ops._metrics import SagaMetrics
from sagaloom._runtime._events import EventLog
from sagaloom._runtime._links import LINKS
from sagaloom._saga._definition import Saga, undoable
from sagaloom._saga._fanout_rules import ItemCounts
from sagaloom._saga._model import (
    CompensationState,
    SagaReport,
    SagaState,
    SagaStatus,
    StepState,
    StepStatus,
)
from sagaloom._saga._schedule import undo_order
from sagaloom._wire._names import HOLD_PREFIX, SAGA_STATUS, SAGA_STEP, key_step

__all__ = ["Progress", "details", "key_family"]


class Progress:
    """The saga's record: the ``saga_state`` query, the report, metrics and search attributes."""

    def __init__(self, saga: Saga[Any]) -> None:
        self.saga = saga
        self.state = SagaState(
            saga=saga.name,
            steps=[
                StepState(
                    name=s.name,
                    kind=s.action.kind,
                    # a child saga is compensated as a unit; a fan-out item by item
                    has_compensation=undoable(s),
                )
                for s in saga.steps
            ],
        )
        self.outputs: dict[str, Any] = {}
        """JSON-able outputs of completed steps, by name."""
        self.inputs: dict[str, Any] = {}
        """What each forward action was called with, by step name (for its compensation)."""
        self._by_name = {s.name: s for s in self.state.steps}
        self._registered: list[str] = []
        """Steps whose compensation is registered, in start order."""
        self._key_wait_since = datetime.min.replace(tzinfo=UTC)
        self._unrecorded: set[str] = set()
        """Fast-path steps registered for undo without a record of their run (see
        ``SagaWorkflow._unrecorded_may_have_run``)."""
        self.compensations: list[CompensationState] = []
        """Compensations that ended, in the order they ended."""
        self.metrics: SagaMetrics | None = None
        self.events = EventLog(saga)
        """Lifecycle events to publish (``Saga(events=True)``)."""
        self._generations: dict[str, int] = {}
        """Steps redriven under a new idempotency key (after a refusal), by step."""

    def begin(self) -> None:
        """Count the run as started (inside the workflow: binds the metric meter)."""
        self.metrics = SagaMetrics(self.saga.name)
        self.metrics.started()

    def step(self, name: str) -> StepState:
        """The live state of step ``name``."""
        return self._by_name[name]

    def register(self, name: str, *, unrecorded: bool = False) -> None:
        """Register a step's compensation: before the step runs, so an unknown outcome is undone.

        Args:
            name: The step.
            unrecorded: A fast-path step that may have run without a record of it.
        """
        if name not in self._registered:  # (a redriven step is registered once)
            self._registered.append(name)
        if unrecorded:
            self._unrecorded.add(name)

    def key_name(self, name: str) -> str:
        """What step ``name``'s calls carry in their keys and activity ids (``key_step``)."""
        return key_step(name, self._generations.get(name, 0))

    def next_generation(self, name: str) -> None:
        """Step ``name`` is redriven under a new idempotency key (``<step>~r<n>``)."""
        self._generations[name] = self._generations.get(name, 0) + 1

    def refused(self, name: str) -> None:
        """The participant refused the step: nothing took effect, nothing to undo."""
        if name in self._registered:
            self._registered.remove(name)

    def registered(self, name: str) -> bool:
        """Whether the step's compensation is registered."""
        return name in self._registered

    def unrecorded(self, name: str) -> bool:
        """Whether the step was registered without a record of its run (fast path)."""
        return name in self._unrecorded

    def undo_order(self) -> list[str]:
        """The registered steps in the order compensations are considered (``undo_order``)."""
        return undo_order(self._registered)

    def failed_compensations(self) -> list[CompensationState]:
        """Compensations that failed for good and no operator resolved."""
        return [c for c in self.compensations if not c.ok and c.resolution is None]

    def record_input(self, name: str, value: Any) -> None:
        """What step ``name``'s forward action was called with (for its compensation)."""
        self.inputs[name] = value

    def record_output(self, name: str, value: Any) -> None:
        """Step ``name``'s output, once it is done (later steps and the report read it)."""
        self.outputs[name] = value

    def step_failed(self, name: str, error: str) -> None:
        """Count step ``name`` failing for good with an error of type ``error`` (metrics)."""
        if self.metrics is not None:
            self.metrics.step_failed(name, error)

    def waiting(self, name: str, service: str) -> None:
        """Step ``name`` waits for ``service``: shown, announced and counted."""
        self.publish()
        self.events.emit("step.waiting", self.state.key, step=name, service=service)
        if self.metrics is not None:
            self.metrics.waited(name, service)

    def waiting_for_key(self, key: str, holder: str | None) -> None:
        """The saga waits for exclusive ``key``, which ``holder`` holds: shown and announced."""
        self.state.waiting_for_key, self.state.key_holder = key, holder
        self._key_wait_since = workflow.now()
        self.set_status(SagaStatus.WAITING)
        self.events.emit("saga.waiting", self.state.key, exclusive_key=key, holder=holder)
        if self.metrics is not None:
            self.metrics.key_waited(key_family(key))

    def key_taken(self, key: str) -> None:
        """The waited-for ``key`` is the saga's now: it goes on."""
        self.state.waiting_for_key = self.state.key_holder = None
        if self.metrics is not None:
            self.metrics.key_waited(key_family(key), workflow.now() - self._key_wait_since)
        self.set_status(SagaStatus.RUNNING)

    def step_ended(self, name: str, status: StepStatus, error: str | None = None) -> None:
        """Record how a forward action ended, with its duration and attempts."""
        state = self._by_name[name]
        state.status, state.error, state.ended_at = status, error, workflow.now()
        self.publish()
        done = status is StepStatus.DONE
        self.events.emit(
            "step.completed" if done else "step.failed",
            self.state.key,
            step=state.name,
            attempt=state.attempts or None,
            error=None if done else error,
        )
        if self.metrics is not None and state.started_at is not None:
            outcome = "done" if status is StepStatus.DONE else "failed"
            outcome = "cancelled" if error == "cancelled" else outcome
            self.metrics.step(
                state.name, outcome, state.ended_at - state.started_at, state.attempts
            )

    def compensation_ended(
        self, name: str, status: StepStatus, *, ok: bool, error: str | None = None, **extra: Any
    ) -> None:
        """Record how a step's compensation ended (``extra``: a resolution)."""
        self._by_name[name].status = status
        self.publish()
        self.events.emit(
            "compensation.completed" if ok else "compensation.failed",
            self.state.key,
            step=name,
            error=error,
            resolution=extra.get("resolution"),
        )
        self.compensations.append(CompensationState(step=name, ok=ok, error=error, **extra))

    def count_compensation(self, step: str, *, ok: bool) -> None:
        """Count one compensation attempt's outcome in the metrics."""
        if self.metrics is not None:
            self.metrics.compensation(step, ok)

    def publish(self) -> None:
        """Show the step table as the run's current details (the Web UI's run page).

        Served from memory by the SDK's built-in ``__temporal_workflow_metadata`` query: no
        history event and no visibility write, so every saga shows where it is at no cost.
        """
        if self.saga.live_details:
            workflow.set_current_details(details(self.state, workflow.info().workflow_id))

    def set_status(self, status: SagaStatus, *, error: str | None = None) -> None:
        """Change the saga's status; mirror it into ``SagaStatus`` and the metrics.

        A saga that completes without ever leaving the happy path writes no ``SagaStatus``: its
        execution status (Completed) says it, and the upsert would cost an event and a
        visibility write per saga. Once the attribute holds a value (a compensation, a park, a
        start by a plain client, a run started before this rule), every change is written.
        """
        before, self.state.status = self.state.status, status
        if error is not None:
            self.state.error = error
        self._announce(before, status)
        written = workflow.info().typed_search_attributes.get(SAGA_STATUS) is not None
        if status is not SagaStatus.COMPLETED or written:
            updates = [SAGA_STATUS.value_set(status)]
            if status is SagaStatus.COMPENSATED and self.state.failed_step:
                updates.append(SAGA_STEP.value_set(self.state.failed_step))  # where it failed
            if status is SagaStatus.HELD and self.state.parked_step:
                updates.append(SAGA_STEP.value_set(self.state.parked_step))  # where it waits
            self.upsert(*updates)
        self.publish()
        if self.metrics is not None:
            self.metrics.ended(status)

    def _announce(self, before: SagaStatus, status: SagaStatus) -> None:
        """The lifecycle event of a status change, if it is one."""
        state = self.state
        waited = (SagaStatus.NEEDS_ATTENTION, SagaStatus.HELD)
        if before in waited and status is not before:
            self.events.emit("saga.resolved", state.key, step=state.parked_step, status=status)
        kind = _STATUS_EVENTS.get(status)
        if kind is not None:
            step = state.parked_step if status in waited else state.failed_step
            self.events.emit(kind, state.key, step=step, error=state.error, status=status)

    def report(self) -> SagaReport:
        """The saga's report as it stands."""
        return SagaReport(
            saga=self.saga.name,
            key=self.state.key,
            status=self.state.status,
            failed_step=self.state.failed_step,
            error=self.state.error,
            outputs=dict(self.outputs),
            compensations=list(self.compensations),
            steps=[s.model_copy() for s in self.state.steps],
            decisions=list(self.state.decisions),
        )

    @staticmethod
    def upsert(*updates: SearchAttributeUpdate[Any]) -> None:
        """Write search attributes."""
        workflow.upsert_search_attributes(list(updates))


_STATUS_EVENTS = {
    SagaStatus.NEEDS_ATTENTION: "saga.parked",
    SagaStatus.HELD: "saga.held",
    SagaStatus.COMPLETED: "saga.completed",
    SagaStatus.COMPENSATED: "saga.compensated",
    SagaStatus.FAILED: "saga.failed",
    SagaStatus.CANCELED: "saga.cancelled",
}


def details(state: SagaState, workflow_id: str) -> str:
    """The saga's live steps in Temporal's markdown (its run page in the Web UI).

    A numbered list, one step a line (``reserve-stock — done · 1 try``): the Web UI renders
    markdown tables without cell padding (columns ran together), lists read as they are.
    """
    key = f" · `{state.key}`" if state.key else ""
    lines = [f"**{state.saga}**{key} — **{state.status.value}**", ""]
    if state.waiting_for_key:
        holder = f", held by `{state.key_holder}`" if state.key_holder else ""
        lines += [f"Waiting for exclusive key `{state.waiting_for_key}`{holder}", ""]
    for number, step in enumerate(state.steps, 1):
        line = f"{number}. **{step.name}** — {step.status.value}"
        if step.waiting_for and step.waiting_for.startswith(HOLD_PREFIX):
            line += " — held before it by an operator (`saga release` lets it go)"
        elif step.waiting_for:
            line += f" for service `{step.waiting_for}` (its breaker is open)"
        if step.items is not None:
            line += f" · {_items_line(step.items)}"
        elif step.attempts:
            line += f" · {step.attempts} {'try' if step.attempts == 1 else 'tries'}"
        error = (step.compensation_error or step.error or "").replace("\n", " ")[:120]
        if error:
            line += f" · {error}"
        lines.append(line)
    if state.parked_step and state.status is SagaStatus.HELD:
        held = state.parked_step
        lines += [
            "",
            f"**Held at `{held}`** for an operator: fix the cause, then",
            f"`saga redrive {workflow_id}` (runs `{held}` again; `--input` / `--request-patch`"
            " to change it),",
            f"`saga compensate {workflow_id}` (gives up: undoes the steps done), or",
            f"`saga mark-done {workflow_id} --step {held} --output JSON` (done by hand).",
        ]
    elif state.parked_step:
        lines += ["", f"Needs attention: `saga resolve {workflow_id} --retry` (or `--skip`)"]
    for decision in state.decisions[-3:]:
        who = f" by {decision.by}" if decision.by else ""
        note = f": {decision.note}" if decision.note else ""
        lines.append(f"- {decision.action} `{decision.step}`{who}{note}")
    drawing = LINKS.drawing(workflow_id)
    if drawing is not None:
        lines += ["", f"[See this run drawn on its graph]({drawing})"]
    return "\n".join(lines)


def _items_line(items: ItemCounts) -> str:
    """A fan-out's progress: ``7/10 done · 1 failed · 2 running · 3 undone``."""
    parts = [f"{items.done}/{items.total} done"]
    parts += [f"{n} {what}" for n, what in (
        (items.failed, "failed"), (items.running, "running"), (items.undone, "undone")
    ) if n]  # fmt: skip
    return " · ".join(parts)


def key_family(key: str) -> str:
    """An exclusive key's family, for metrics: what comes before its first ``:``."""
    return key.split(":", 1)[0] if ":" in key else "key"
