"""A service's breaker as a workflow: shared by every worker, kept in Temporal, bounded history.

Closed, it counts the unavailable failures the HTTP activity reports (a ``Command`` step's
finding that no consumer takes its service's commands opens it at once); ``threshold`` of them
within ``window`` open it. Open, it holds the steps that wait for the service, tests the service
every ``probe_every`` (one probe, not one call per waiting saga), and closes when the service
answers; closed again, it releases the waiting steps in arrival order, ``release_per_second``
at a time, so the recovering service is not stampeded. A step waits at most the outage budget:
past it every waiting step (and each new one) is told to give up, and its saga compensates. An
operator may force it open or closed (``saga services --open/--close``), or back to automatic.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import FailureError

from sagaloom._runtime._line import check_release_line
from sagaloom._saga._outage import (
    BREAKER_WORKFLOW,
    RELEASED_SIGNAL,
    REPORT_SIGNAL,
    SET_UPDATE,
    VIEW_QUERY,
    WAIT_SIGNAL,
    BreakerOrder,
    BreakerStart,
    BreakerStatus,
    BreakerView,
    ReleaseNotice,
    ServiceFailure,
    WaitRequest,
    recent_failures,
    release_gap,
)
from sagaloom._wire._names import BREAKER_MEMO

__all__ = ["ServiceBreaker"]

_HISTORY_LIMIT = 4000
"""Events after which a breaker continues as new, carrying its view."""


@workflow.defn(name=BREAKER_WORKFLOW)
class ServiceBreaker:
    """One service's breaker for one app (``sagaloom-breaker:<task queue>:<service>``)."""

    @workflow.init
    def __init__(self, start: BreakerStart) -> None:
        self._service = start.service
        self._view = start.view or BreakerView(service=start.service, settings=start.settings)
        self._view.settings = start.settings
        self._probe = start.probe
        self._woken = False
        """Something to do while closed: a waiter, an order, a change of state."""
        self._ordered = False
        """An operator's order (wakes an open breaker early)."""

    @workflow.query(name=VIEW_QUERY)
    def view(self) -> BreakerView:
        """The breaker as it stands."""
        return self._view

    @workflow.signal(name=REPORT_SIGNAL)
    def failed(self, failure: ServiceFailure) -> None:
        """A call failed as unavailable: count it; enough of them open the breaker."""
        view, now = self._view, workflow.now()
        view.last_error = failure.reason[:300]
        if view.status is BreakerStatus.OPEN or view.forced == "close":
            return
        view.failures = [*recent_failures(view.failures, now, view.settings.window), now]
        if failure.decisive:
            self._open(f"{failure.reason[:200]}")
        elif len(view.failures) >= view.settings.threshold:
            self._open(f"{len(view.failures)} unavailable failures within {view.settings.window}")

    @workflow.signal(name=WAIT_SIGNAL)
    def wait(self, request: WaitRequest) -> None:
        """A step waits for the service (again: it keeps its place)."""
        view = self._view
        if not any(w == request for w in view.waiting):
            view.waiting.append(request)
        self._woken = True

    @workflow.update(name=SET_UPDATE)
    def set(self, order: BreakerOrder) -> BreakerView:
        """An operator forces the breaker open or closed, or gives it back to the rules."""
        view = self._view
        view.note = order.note
        if order.release_per_second is not None:  # the rate the recovering service can take
            view.settings = view.settings.model_copy(
                update={"release_per_second": order.release_per_second}
            )
        if order.action == "open":
            view.forced = "open"
            self._open(f"opened by hand{': ' + order.note if order.note else ''}")
        elif order.action == "close":
            view.forced = "close"
            self._close()
        else:
            view.forced = None
        self._woken = self._ordered = True
        return view

    @set.validator
    def _check(self, order: BreakerOrder) -> None:
        if order.action not in ("open", "close", "auto"):
            raise ValueError(f"action {order.action!r}: open, close or auto")

    @workflow.run
    async def run(self, start: BreakerStart) -> None:
        """Open: hold and probe; closed: release the waiting steps at the set rate."""
        check_release_line()
        self._publish()  # (a continued run, or a first report that opened it already)
        while True:
            view = self._view
            if view.status is BreakerStatus.OPEN:
                await self._hold_and_probe()
            elif view.waiting:
                await self._release_next()
            else:
                await workflow.wait_condition(lambda: self._woken)
                self._woken = False
            info = workflow.info()
            if info.is_continue_as_new_suggested() or (
                info.get_current_history_length() > _HISTORY_LIMIT
            ):
                await workflow.wait_condition(workflow.all_handlers_finished)
                workflow.continue_as_new(
                    BreakerStart(
                        service=self._service,
                        settings=view.settings,
                        view=self._view,
                        probe=self._probe,
                    )
                )

    def _open(self, why: str) -> None:
        view = self._view
        if view.status is BreakerStatus.OPEN:
            return
        view.status, view.opened_at = BreakerStatus.OPEN, workflow.now()
        view.expired, view.released, view.probes, view.failures = False, 0, 0, []
        workflow.logger.warning("breaker of service %s opened: %s", self._service, why)
        self._woken = True
        self._publish()

    def _close(self) -> None:
        view = self._view
        if view.status is BreakerStatus.CLOSED:
            return
        view.status, view.expired, view.failures = BreakerStatus.CLOSED, False, []
        workflow.logger.warning(
            "breaker of service %s closed: releasing %d waiting step(s)",
            self._service,
            len(view.waiting),
        )
        self._woken = True
        self._publish()

    def _publish(self) -> None:
        """Keep the status in the memo, which callers read without asking a worker."""
        workflow.upsert_memo({BREAKER_MEMO: self._view.status.value})

    async def _hold_and_probe(self) -> None:
        view, settings = self._view, self._view.settings
        assert view.opened_at is not None
        if not view.expired and workflow.now() - view.opened_at >= settings.outage_budget:
            view.expired = True  # from now on a waiting step gives up (forced open too)
        if view.expired and view.waiting:
            reason = f"service {self._service} unavailable for over {settings.outage_budget}"
            for request in list(view.waiting):
                await self._notify(request, go=False, reason=reason)
            view.waiting.clear()
        self._ordered = False
        with contextlib.suppress(TimeoutError):  # the probe's time has come
            await workflow.wait_condition(lambda: self._ordered, timeout=settings.probe_every)
        if view.status is BreakerStatus.OPEN and view.forced != "open" and not self._ordered:
            view.probes += 1
            try:
                problem: str = await workflow.execute_activity(
                    self._probe,
                    self._service,
                    result_type=str,
                    start_to_close_timeout=timedelta(seconds=10),
                    retry_policy=RetryPolicy(maximum_attempts=1),
                    summary=f"probe {self._service}",
                )
            except FailureError as err:
                problem = str(err) or type(err).__name__
            if problem:
                view.last_error = problem[:300]
            else:
                self._close()

    async def _release_next(self) -> None:
        view = self._view
        batch, pause = release_gap(view.settings)
        going, view.waiting = view.waiting[:batch], view.waiting[batch:]
        await asyncio.gather(*(self._notify(request, go=True) for request in going))
        view.released += len(going)
        await workflow.sleep(pause, summary="release rate")

    async def _notify(self, request: WaitRequest, *, go: bool, reason: str = "") -> None:
        notice = ReleaseNotice(service=self._service, step=request.step, go=go, reason=reason)
        handle = workflow.get_external_workflow_handle(request.workflow_id)
        with contextlib.suppress(FailureError):  # the saga ended meanwhile: nobody to tell
            await handle.signal(RELEASED_SIGNAL, notice)
