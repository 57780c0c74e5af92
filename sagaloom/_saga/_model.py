"""Data models shared by the saga runtime, the activities, the workers and clients.

This module is side-effect free and safe to import inside the Temporal workflow sandbox.
Everything here crosses the wire through the pydantic data converter.
"""

from __future__ import annotations

import json
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from sagaloom._saga._fanout_rules import ItemCounts

__all__ = [
    "EVENT_TYPES",
    "EXCLUSIVE_TIMEOUT",
    "MAX_REPLY_BYTES",
    "MAX_REPLY_DEPTH",
    "MAX_STORED_REPLY_BYTES",
    "SAGA_COMPENSATED",
    "SAGA_COMPENSATION_FAILED",
    "SAGA_ENDED_FIRST",
    "SAGA_INPUT_ERROR",
    "SAGA_NEEDS_ATTENTION",
    "BrokerCommand",
    "ChildDone",
    "CompensationState",
    "Decision",
    "HttpRequest",
    "HttpResponse",
    "Reply",
    "Resolution",
    "ResolveAction",
    "SagaEvent",
    "SagaReport",
    "SagaState",
    "SagaStatus",
    "StepState",
    "StepStatus",
    "reply_problem",
]

SAGA_COMPENSATED = "SagaCompensated"
"""``ApplicationError.type`` of a saga that failed at a step and undid its started steps."""

SAGA_COMPENSATION_FAILED = "SagaCompensationFailed"
"""``ApplicationError.type`` of a saga with ``continue_on_compensation_error`` whose compensations
did not all succeed (the report lists each failure)."""

SAGA_ENDED_FIRST = "SagaEndedFirst"
"""``ApplicationError.type`` of an answer-early wait whose saga ended without the step's output
(cancelled, or completed with the step skipped)."""
SAGA_NEEDS_ATTENTION = "SagaNeedsAttention"
"""``ApplicationError.type`` of an answer-early wait whose saga was parked for an operator first."""
SAGA_INPUT_ERROR = "SagaInputError"
"""``ApplicationError.type`` of a saga started with input that fails validation."""
EXCLUSIVE_TIMEOUT = "ExclusiveTimeout"
"""``ApplicationError.type`` of a saga that waited longer than its ``exclusive_timeout`` for an
exclusive key (it failed before its first step: nothing to compensate)."""


class SagaStatus(StrEnum):
    """Where a saga is in its life; also the value of the ``SagaStatus`` search attribute."""

    RUNNING = "RUNNING"
    WAITING = "WAITING"
    """A step waits for a service whose breaker is open (no retries spent meanwhile), or the
    saga waits for an exclusive key another saga holds (before its first step)."""
    COMPLETED = "COMPLETED"
    COMPENSATING = "COMPENSATING"
    COMPENSATED = "COMPENSATED"
    NEEDS_ATTENTION = "NEEDS_ATTENTION"
    HELD = "HELD"
    """A step failed for good and its ``on_failure`` policy holds: the saga waits at that step
    (the steps before it in place) for an operator to redrive it, compensate it or mark the
    step done."""
    FAILED = "FAILED"
    CANCELED = "CANCELED"


class StepStatus(StrEnum):
    """Where one step is in its life."""

    PENDING = "pending"
    RUNNING = "running"
    WAITING = "waiting"
    """Waiting for its service (``waiting_for``) to answer again."""
    DONE = "done"
    FAILED = "failed"
    COMPENSATING = "compensating"
    COMPENSATED = "compensated"
    COMPENSATION_FAILED = "compensation_failed"
    COMPENSATION_SKIPPED = "compensation_skipped"
    SKIPPED = "skipped"


class CompensationState(BaseModel):
    """The outcome of one step's compensation."""

    model_config = ConfigDict(frozen=True)

    step: str
    """Name of the step that was undone."""
    ok: bool
    """Whether the compensation succeeded."""
    error: str | None = None
    """Why it failed, when it did."""
    resolution: str | None = None
    """An operator's decision about it, when the saga was parked on it."""


ResolveAction = Literal["retry", "skip", "mark_compensated", "compensate", "mark_done"]
"""What an operator can decide for a saga waiting for one: a parked compensation (``retry``,
``skip``, ``mark_compensated``), a retriable step out of budget (``retry``, ``skip``), or a held
step (``retry`` — a redrive —, ``compensate``, ``mark_done``)."""


class Resolution(BaseModel):
    """An operator's decision for a saga that waits for one (the ``resolve`` update).

    For a parked compensation: ``retry`` runs it again; ``skip`` leaves it undone, with a
    recorded reason; ``mark_compensated`` records that it was done by hand. For a held step:
    ``retry`` redrives it (fresh attempts; with ``input``, a corrected saga input; with
    ``request_patch``, a JSON merge patch of its request), ``compensate`` gives up (the saga
    undoes its started steps), ``mark_done`` records it done by hand with ``output``. A decision
    that names a step must name the one waiting, so it never lands on the wrong one; one whose
    ``id`` was applied already is a no-op (safe to repeat).
    """

    model_config = ConfigDict(frozen=True)

    action: ResolveAction
    step: str | None = None
    note: str = ""
    by: str = ""
    """Who decided (the CLI sends ``user@host``)."""
    id: str = ""
    """The decision's id: the same id again changes nothing (a retried or bulk action)."""
    input: dict[str, Any] | None = None
    """A redrive's new saga input (validated; the business key cannot change)."""
    request_patch: dict[str, Any] | None = None
    """A redrive's JSON merge patch of the held step's request (body, argument)."""
    output: Any = None
    """``mark_done``: the step's output, as the participant would have answered."""


class Reply(BaseModel):
    """A participant's answer to a step's command (the ``participant_reply`` update).

    ``correlation_id`` is the command's ``Idempotency-Key`` (``<workflow id>:<step>``).
    """

    model_config = ConfigDict(frozen=True)

    correlation_id: str
    ok: bool = True
    data: dict[str, Any] = Field(default_factory=dict)
    """What the participant reports (becomes the step's output)."""
    reason: str = ""
    """Why it said no."""


MAX_REPLY_BYTES = 64 * 1024
"""Largest reply a saga takes (its data as JSON): far under Temporal's 2 MB payload limit, so
even the replies a saga may take in its life stay far under the 50 MB history limit."""
MAX_STORED_REPLY_BYTES = 64 * 1024 * 1024
"""Largest reply a saga takes when its payloads go to a store (a broker reply; history holds a
reference to the data, so its size no longer weighs on history)."""
MAX_REPLY_DEPTH = 32
"""Deepest nesting of a reply's data."""


def _depth(value: Any, limit: int) -> int:
    """Nesting depth of a JSON value, counting no further than ``limit + 1``."""
    todo, deepest = [(value, 1)], 0
    while todo:
        item, level = todo.pop()
        deepest = max(deepest, level)
        if level > limit:
            break
        if isinstance(item, dict):
            todo.extend((v, level + 1) for v in item.values())
        elif isinstance(item, list):
            todo.extend((v, level + 1) for v in item)
    return deepest


def reply_problem(reply: Reply, limit: int = MAX_REPLY_BYTES) -> str | None:
    """Why a saga would refuse ``reply`` for its size or shape; None when it is acceptable.

    Args:
        reply: The reply.
        limit: The largest data (JSON bytes): :data:`MAX_REPLY_BYTES`, or
            :data:`MAX_STORED_REPLY_BYTES` where the saga's payloads go to a store.
    """
    size = len(json.dumps(reply.data, separators=(",", ":"), default=str))
    if size > limit:
        return f"reply data is {size} bytes; the limit is {limit} bytes"
    if _depth(reply.data, MAX_REPLY_DEPTH) > MAX_REPLY_DEPTH:
        return f"reply data nests deeper than {MAX_REPLY_DEPTH} levels"
    if len(reply.reason) > 1000:
        return "reply reason is over 1000 characters"
    return None


class ChildDone(BaseModel):
    """What a child saga tells its parent when its steps are done (the ``child_done`` signal)."""

    workflow_id: str
    outputs: dict[str, Any] = Field(default_factory=dict)


class Decision(Resolution):
    """A :class:`Resolution` as applied, with the step it applied to and when."""

    at: datetime
    error: str
    """The compensation's error the decision answered."""


class StepState(BaseModel):
    """Live state of one step, as returned by the ``saga_state`` query."""

    name: str
    """Step name, unique in its saga."""
    kind: str
    """``http``, ``activity`` or ``timer``."""
    status: StepStatus = StepStatus.PENDING
    """Current status."""
    attempts: int = 0
    """Attempts of the forward action known to the saga (0 while unknown)."""
    error: str | None = None
    """Last error of the forward action."""
    started_at: datetime | None = None
    """When the forward action started (workflow time)."""
    ended_at: datetime | None = None
    """When the forward action ended (workflow time)."""
    has_compensation: bool = False
    """Whether the step declares a compensating action."""
    compensation_attempts: int = 0
    """Attempts of the compensation known to the saga."""
    compensation_error: str | None = None
    """Last error of the compensation."""
    waiting_for: str | None = None
    """The service whose breaker the step waits for (status ``waiting``)."""
    items: ItemCounts | None = None
    """A ``ForEach`` step's items: done / failed / running of total, and undone."""


class SagaState(BaseModel):
    """Live state of a saga: the answer of the ``saga_state`` query."""

    saga: str
    """Saga (workflow type) name."""
    key: str | None = None
    """Business key of this run (for example the order id)."""
    status: SagaStatus = SagaStatus.RUNNING
    """Overall status."""
    failed_step: str | None = None
    """The step whose failure started compensation."""
    error: str | None = None
    """Why the saga stopped going forward."""
    parked_step: str | None = None
    """The step whose compensation failed for good and waits for an operator (NEEDS_ATTENTION)."""
    decisions: list[Decision] = Field(default_factory=list)
    """Operators' decisions, in order."""
    steps: list[StepState] = Field(default_factory=list)
    """One entry per step, in definition order."""
    waiting_for_key: str | None = None
    """The exclusive key the saga waits for before its first step (status ``WAITING``)."""
    key_holder: str | None = None
    """The saga that holds that key (its workflow id)."""


class SagaReport(BaseModel):
    """Outcome of a finished saga: its result when it completed, or the error details otherwise.

    A completed saga returns it; a compensated one fails with an ``ApplicationError`` of type
    :data:`SAGA_COMPENSATED` whose first detail is this report (compensations an operator
    skipped or marked done carry their ``resolution``).
    """

    saga: str
    """Saga name."""
    key: str | None = None
    """Business key."""
    status: SagaStatus
    """Final status."""
    failed_step: str | None = None
    """Step whose failure triggered compensation."""
    error: str | None = None
    """That step's error."""
    outputs: dict[str, Any] = Field(default_factory=dict)
    """Outputs of the steps that completed, by step name."""
    compensations: list[CompensationState] = Field(default_factory=list)
    """Compensations that ran, in the order they ran."""
    steps: list[StepState] = Field(default_factory=list)
    """Each step as it ended (the step table), so a finished saga reads without a worker."""
    decisions: list[Decision] = Field(default_factory=list)
    """Operators' decisions, in order."""

    def state(self) -> SagaState:
        """The report as a :class:`SagaState` (what the ``saga_state`` query answered)."""
        return SagaState(
            saga=self.saga,
            key=self.key,
            status=self.status,
            failed_step=self.failed_step,
            error=self.error,
            decisions=list(self.decisions),
            steps=list(self.steps),
        )


class HttpRequest(BaseModel):
    """A call to an HTTP participant service, as the saga asks the HTTP activity to make it."""

    model_config = ConfigDict(frozen=True)

    service: str
    """Logical service name; the worker maps it to a base URL (never in workflow history)."""
    method: str
    """HTTP method."""
    path: str
    """Path under the service's base URL."""
    body: dict[str, Any] | None = None
    """JSON body. (The ``Idempotency-Key`` header is derived by the activity from its ids.)"""
    breaker: bool = False
    """Ask the service's breaker first: when it is open, fail at once (``ServiceBreakerOpen``)
    so the saga waits instead of retrying; report unavailability to it."""
    released: bool = False
    """The breaker has just let this call go: call without asking it again."""


class HttpResponse(BaseModel):
    """What the HTTP activity returns for a successful (2xx) call."""

    model_config = ConfigDict(frozen=True)

    status: int
    """HTTP status code."""
    body: Any = None
    """Decoded JSON body (None for an empty body)."""
    attempt: int = 1
    """Activity attempt that succeeded."""


class BrokerCommand(BaseModel):
    """A command a saga step sends over the broker (the ``sagaloom.nats.command`` activity)."""

    subject: str
    """The participant's subject (published under ``sagaloom.cmd.``)."""
    body: Any = None
    """The JSON body."""
    correlation_id: str
    """``<workflow id>:<step>`` (``:compensate`` for an undo): the reply names it; also the
    step's idempotency key."""
    msg_id: str
    """``Nats-Msg-Id``: the same on every retry of this send, so the stream stores it once."""
    service: str = ""
    """The participant service (its breaker's name)."""
    breaker: bool = False
    """Ask the service's breaker first: while it is open nothing is sent, the step waits."""
    released: bool = False
    """The breaker has just let this step go: send without asking again."""


class SagaEvent(BaseModel):
    """One lifecycle event of a saga run, as a CloudEvents 1.0 JSON document."""

    specversion: str = "1.0"
    id: str
    """``<workflow id>/<run id>/<n>``: unique, and the same when its publish is retried."""
    type: str
    """``io.sagaloom.saga.started``, ``io.sagaloom.step.completed``, ... (:data:`EVENT_TYPES`)."""
    source: str
    """``sagaloom/<saga name>``."""
    subject: str
    """The workflow id."""
    time: str
    """When it happened (workflow time, RFC 3339)."""
    datacontenttype: str = "application/json"
    data: dict[str, Any] = Field(default_factory=dict)
    """``saga``, ``key`` and, where they apply, ``step``, ``attempt``, ``error``, ``status``."""


EVENT_TYPES = (
    "io.sagaloom.saga.started",
    "io.sagaloom.step.completed",
    "io.sagaloom.step.failed",
    "io.sagaloom.step.waiting",
    "io.sagaloom.saga.waiting",
    "io.sagaloom.compensation.completed",
    "io.sagaloom.compensation.failed",
    "io.sagaloom.saga.parked",
    "io.sagaloom.saga.held",
    "io.sagaloom.saga.resolved",
    "io.sagaloom.saga.completed",
    "io.sagaloom.saga.compensated",
    "io.sagaloom.saga.failed",
    "io.sagaloom.saga.cancelled",
)
"""Every lifecycle event type a saga publishes."""
