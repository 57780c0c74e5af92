"""The calling side of the per-service breakers (HTTP and command activities): ask, report."""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Mapping
from datetime import timedelta

from temporalio import activity
from temporalio.client import WorkflowExecutionStatus
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.exceptions import ApplicationError, ApplicationErrorCategory

from sagaloom._saga._outage import (
    BREAKER_OPEN,
    BREAKER_WORKFLOW,
    PROBE_ACTIVITY,
    REPORT_SIGNAL,
    VIEW_QUERY,
    BreakerSettings,
    BreakerStart,
    BreakerStatus,
    BreakerView,
    ServiceFailure,
    breaker_id,
    saga_queue,
)
from sagaloom._wire._names import BREAKER_MEMO, hold_service, step_of_key

__all__ = ["Breakers"]

log = logging.getLogger("sagaloom.breaker")

_FRESH = 1.0
"""Seconds a breaker's state read by this process is trusted (one query per service a second
at most, however many calls)."""
FAILING_SHARE = 0.5
"""Share of this process's recent calls to a service that must have failed as unavailable
before it tells the breaker: a few 503s among many answers are not an outage."""


class Breakers:
    """Asks each service's breaker before a call and reports the calls that found it down.

    The breakers are workflows (``sagaloom-breaker:<service>``) on the calling activity's task
    queue; this process reads their state at most once a second per service.
    """

    def __init__(
        self,
        settings: BreakerSettings | None = None,
        budgets: Mapping[str, timedelta] | None = None,
    ) -> None:
        """Create the breakers' client side.

        Args:
            settings: How a breaker started from here behaves; None: breakers off.
            budgets: Outage budgets of particular services (others: ``settings``').
        """
        self.settings = settings
        self._budgets = dict(budgets or {})
        self._seen: dict[str, tuple[float, bool]] = {}
        self._calls: dict[str, deque[tuple[float, bool]]] = {}
        """Per service, this process's recent calls: (when, answered)."""

    @property
    def enabled(self) -> bool:
        """Whether calls consult breakers at all."""
        return self.settings is not None

    def settings_for(self, service: str) -> BreakerSettings:
        """The settings of ``service``'s breaker (its own outage budget if it has one)."""
        assert self.settings is not None
        budget = self._budgets.get(service)
        if budget is None:
            return self.settings
        return self.settings.model_copy(update={"outage_budget": budget})

    async def is_open(self, service: str) -> bool:
        """Whether ``service``'s breaker is open (no breaker, or no answer: closed)."""
        now = time.monotonic()
        seen = self._seen.get(service)
        if seen is not None and seen[0] > now:
            return seen[1]
        handle = activity.client().get_workflow_handle(self._id(service))
        try:  # the memo: the server answers, however busy the workers are
            described = await handle.describe(rpc_timeout=timedelta(seconds=5))
            if described.status is not WorkflowExecutionStatus.RUNNING:
                raise LookupError("the breaker ended (terminated by hand?): calls go")
            status = await described.memo_value(BREAKER_MEMO, None, type_hint=str)
            if status is None:  # a breaker started before it kept a memo: ask it
                view = await handle.query(
                    VIEW_QUERY, result_type=BreakerView, rpc_timeout=timedelta(seconds=5)
                )
                status = view.status.value
            is_open = status == BreakerStatus.OPEN.value
        except Exception:  # no breaker yet (not found), or no answer in time: calls go
            is_open = False
        self._seen[service] = (now + _FRESH, is_open)
        return is_open

    async def check(self, service: str, what: str) -> None:
        """Hold a saga step's call while an operator holds the step, or ``service`` is down.

        An operator's hold (``saga hold``) is the breaker of ``hold.<saga>.<step>``, opened by
        hand; the service's own breaker opens on outages.

        Raises:
            ApplicationError: ``ServiceBreakerOpen``, naming the breaker (``details[0]
                ["service"]``) the saga waits for: no attempt is spent.
        """
        info = activity.info()
        step = step_of_key(info.activity_id.split(":")[0])
        hold = hold_service(info.workflow_type or "", step)
        for name, why in ((hold, "an operator holds the step"),
                          (service, f"the breaker of service {service} is open")):  # fmt: skip
            if await self.is_open(name):
                raise ApplicationError(
                    f"{what}: not called, {why}",
                    {"service": name},
                    type=BREAKER_OPEN,
                    non_retryable=True,  # the saga waits for the breaker; no attempt is spent
                    category=ApplicationErrorCategory.BENIGN,  # expected: the saga waits
                )

    def note(self, service: str, *, answered: bool) -> None:
        """Count a call to ``service``: it answered (any status but 502/503/504), or not."""
        if self.settings is None:
            return
        now, window = time.monotonic(), self.settings.window.total_seconds()
        calls = self._calls.setdefault(service, deque())
        calls.append((now, answered))
        while calls and now - calls[0][0] > window:
            calls.popleft()

    def mostly_failing(self, service: str) -> bool:
        """Whether most of this process's recent calls to ``service`` found it down."""
        calls = self._calls.get(service) or ()
        failed = sum(1 for _, answered in calls if not answered)
        return bool(calls) and failed >= FAILING_SHARE * len(calls)

    @staticmethod
    def _id(service: str) -> str:
        """This app's breaker of ``service`` (the breaker of the calling saga's task queue)."""
        return breaker_id(service, saga_queue(activity.info().task_queue, service))

    def forget(self, service: str) -> None:
        """Drop what this process read of ``service``'s breaker (read it at the next call)."""
        self._seen.pop(service, None)

    async def report(
        self, service: str, reason: str, *, decisive: bool = False, probe: str = PROBE_ACTIVITY
    ) -> None:
        """Tell ``service``'s breaker (starting it if need be) that a call found it down.

        Args:
            service: The service.
            reason: One line: what was found.
            decisive: Open the breaker at once (not one failure towards the threshold).
            probe: The activity that tests the service (when this starts the breaker).
        """
        if self.settings is None:
            return
        if not decisive:
            self.note(service, answered=False)
            if not self.mostly_failing(service):
                return  # a blip among answers: not worth the breaker's attention
        self._seen.pop(service, None)  # read it again at the next call
        try:
            await activity.client().start_workflow(
                BREAKER_WORKFLOW,
                BreakerStart(service=service, settings=self.settings_for(service), probe=probe),
                id=self._id(service),
                task_queue=saga_queue(activity.info().task_queue, service),
                start_signal=REPORT_SIGNAL,
                start_signal_args=[ServiceFailure(reason=reason, decisive=decisive)],
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            )
        except Exception as err:  # the breaker is best effort: the call's own error stands
            log.warning("could not report service %s unavailable to its breaker: %s", service, err)
