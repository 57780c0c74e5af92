"""Outages: the per-service breaker's messages and its pure decisions (sandbox-safe).

A step whose service is down does not spend its retries and compensate: once calls to the
service have failed as *unavailable* (connection refused or reset, a timeout, 502/503/504)
``threshold`` times within ``window``, the service's breaker opens; steps that call it then wait
(status WAITING), a probe tests the service every ``probe_every``, and when it answers the
waiting steps are released ``release_per_second`` at a time. A step waits at most the outage
budget; past it the saga compensates as it would have without the breaker.

The breaker is a workflow per app and service (``sagaloom-breaker:<task queue>:<service>``), so
its state is in
Temporal and shared by every worker; :mod:`sagaloom._runtime._breaker` runs it with the rules
below, and the HTTP participant and the command activity ask it before each call.

A ``Command`` participant is down when a reply does not come in time *and* no consumer takes
the service's commands (none pulling, none delivered to lately): that one finding opens the
breaker (a *decisive* failure), and its probe watches the consumers instead of calling a URL.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "BREAKER_OPEN",
    "BREAKER_WORKFLOW",
    "COMMAND_PROBE_ACTIVITY",
    "COMMAND_SILENT_ACTIVITY",
    "OUTAGE_BUDGET_SPENT",
    "PROBE_ACTIVITY",
    "RELEASED_SIGNAL",
    "REPORT_SIGNAL",
    "SET_UPDATE",
    "UNAVAILABLE_STATUSES",
    "VIEW_QUERY",
    "WAIT_SIGNAL",
    "BreakerOrder",
    "BreakerSettings",
    "BreakerStart",
    "BreakerStatus",
    "BreakerView",
    "ReleaseNotice",
    "ServiceFailure",
    "ServiceLimit",
    "WaitRequest",
    "breaker_id",
    "limit_queue",
    "recent_failures",
    "release_gap",
    "saga_queue",
]

BREAKER_WORKFLOW = "SagaloomServiceBreaker"
"""Workflow type of a service's breaker."""
BREAKER_OPEN = "ServiceBreakerOpen"
"""Error type the HTTP activity raises, before calling, when the service's breaker is open:
nothing was sent, the saga waits for the breaker instead of retrying."""
OUTAGE_BUDGET_SPENT = "OutageBudgetSpent"
"""Error type of a step that waited for its service longer than the outage budget (its outcome
is unknown: earlier attempts may have reached the service, so it is undone)."""
PROBE_ACTIVITY = "sagaloom.breaker.probe"
"""Activity the breaker runs to test whether its service answers again."""
COMMAND_PROBE_ACTIVITY = "sagaloom.breaker.probe_command"
"""The probe of a ``Command`` service: does a consumer take its commands again?"""
COMMAND_SILENT_ACTIVITY = "sagaloom.breaker.command_silent"
"""Activity a ``Command`` step runs when its reply is late: is the participant down (then its
breaker is told, and opens) or up but silent (the step fails as before)?"""
REPORT_SIGNAL = "service_failed"
"""Signal: a call to the service failed as unavailable."""
WAIT_SIGNAL = "wait_for_service"
"""Signal: a saga's step waits for the service (a :class:`WaitRequest`)."""
RELEASED_SIGNAL = "service_released"
"""Signal to a waiting saga: go on with the step, or give up (a :class:`ReleaseNotice`)."""
SET_UPDATE = "set_breaker"
"""Update: an operator opens or closes the breaker by hand (a :class:`BreakerOrder`)."""
VIEW_QUERY = "breaker"
"""Query: the breaker as it stands (a :class:`BreakerView`)."""
UNAVAILABLE_STATUSES = frozenset({502, 503, 504})
"""HTTP statuses that mean the service is down (a 500 is a fault, a 429 a limit: not outages)."""

_PREFIX = "sagaloom-breaker:"


def breaker_id(service: str, task_queue: str | None = None) -> str:
    """Workflow id of ``service``'s breaker: one per app (its task queue) and service.

    Without ``task_queue``: the id breakers had before they were per task queue (one per
    namespace), which sagas started then still signal.
    """
    return f"{_PREFIX}{service}" if task_queue is None else f"{_PREFIX}{task_queue}:{service}"


def saga_queue(task_queue: str, service: str) -> str:
    """The sagas' task queue of an activity running on ``task_queue`` for ``service``.

    The same queue, unless the service's calls are limited and run on its own queue (see
    :func:`limit_queue`): the breaker runs where the sagas' workers are.
    """
    return task_queue.removesuffix(f"@{service}")


class BreakerSettings(BaseModel):
    """How a service's breaker behaves (the workers' ``SAGALOOM_BREAKER_*`` settings)."""

    model_config = ConfigDict(frozen=True)

    threshold: int = Field(5, gt=0)
    """Unavailable failures within ``window`` that open the breaker."""
    window: timedelta = timedelta(seconds=30)
    """How far back failures count."""
    probe_every: timedelta = timedelta(seconds=5)
    """How often an open breaker tests the service."""
    release_per_second: float = Field(10.0, gt=0)
    """How many waiting steps go on per second once the service answers again."""
    outage_budget: timedelta = timedelta(hours=1)
    """How long a step waits at most; past it the saga compensates."""


class ServiceLimit(BaseModel):
    """How fast and how wide calls to one service may go (``SAGALOOM_SERVICE_<NAME>_...``).

    A limited service's HTTP calls run on a task queue of its own (:func:`limit_queue`), which
    every worker of the app polls: the server holds its activities to ``calls_per_second``
    across all workers, and each worker runs at most ``max_concurrent`` of them at once.
    """

    model_config = ConfigDict(frozen=True)

    calls_per_second: float | None = Field(None, gt=0)
    """All workers together (Temporal's task-queue rate limit); None: no rate limit."""
    max_concurrent: int | None = Field(None, gt=0)
    """Per worker process (its activity slots on the service's queue); None: 100."""


def limit_queue(task_queue: str, service: str) -> str:
    """The task queue of ``service``'s HTTP calls from sagas on ``task_queue``."""
    return f"{task_queue}@{service}"


class BreakerStatus(StrEnum):
    """Whether calls go through."""

    CLOSED = "closed"
    OPEN = "open"


class ServiceFailure(BaseModel):
    """A call that failed as unavailable, reported by the HTTP activity."""

    reason: str
    """One line: the transport error or the status."""
    decisive: bool = False
    """Opens the breaker at once (a ``Command`` service with no live consumer)."""


class WaitRequest(BaseModel):
    """A saga's step waits for the service."""

    workflow_id: str
    step: str


class ReleaseNotice(BaseModel):
    """The breaker's word to a waiting step."""

    service: str
    step: str
    go: bool
    """True: call again now; False: the outage budget is spent, give up."""
    reason: str = ""


class BreakerOrder(BaseModel):
    """An operator's order: force the breaker open, force it closed, or back to automatic."""

    action: str = Field(pattern="^(open|close|auto)$")
    note: str = Field("", max_length=1000)
    release_per_second: float | None = Field(None, gt=0)
    """Release the waiting steps at this rate from now on (None: as set)."""


class BreakerView(BaseModel):
    """A breaker as ``saga services`` shows it (its query's answer)."""

    service: str
    status: BreakerStatus = BreakerStatus.CLOSED
    forced: str | None = None
    """``open`` or ``close`` when an operator forced it; None while automatic."""
    opened_at: datetime | None = None
    expired: bool = False
    """Open for longer than the outage budget: new waiters give up at once."""
    failures: list[datetime] = Field(default_factory=list)
    """Recent unavailable failures (while closed)."""
    waiting: list[WaitRequest] = Field(default_factory=list)
    """Steps waiting, in arrival order (released in this order)."""
    released: int = 0
    """Steps released since the breaker last opened."""
    probes: int = 0
    """Probes run since the breaker last opened."""
    last_error: str = ""
    note: str = ""
    settings: BreakerSettings = Field(default_factory=BreakerSettings)


class BreakerStart(BaseModel):
    """What a breaker run starts from (a continued run carries its view)."""

    service: str
    settings: BreakerSettings
    view: BreakerView | None = None
    probe: str = PROBE_ACTIVITY
    """The activity that tests the service (HTTP: a request; commands: its consumers)."""


def recent_failures(failures: list[datetime], now: datetime, window: timedelta) -> list[datetime]:
    """The failures still inside ``window`` at ``now``, oldest first."""
    return [at for at in failures if now - at < window]


def release_gap(settings: BreakerSettings) -> tuple[int, timedelta]:
    """How many waiting steps to release together, and the pause after each batch.

    At most ``release_per_second`` a second: a whole second's worth at once when the rate is one
    or more (their signals go out together), else one step per ``1 / rate`` seconds.
    """
    rate = settings.release_per_second
    if rate >= 1:
        return int(rate), timedelta(seconds=int(rate) / rate)
    return 1, timedelta(seconds=1 / rate)
