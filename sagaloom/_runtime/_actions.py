"""Running one action: an HTTP call, an activity, a timer or a child saga, with its timeouts."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any, cast

from pydantic import BaseModel
from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, FailureError, TimeoutError
from temporalio.workflow import ActivityCancellationType

from sagaloom._runtime._children import Children
from sagaloom._runtime._failures import breaker_open
from sagaloom._runtime._progress import Progress
from sagaloom._runtime._replies import Replies, ReplyFailed
from sagaloom._runtime._waits import ServiceWaits
from sagaloom._saga._definition import (
    Action,
    Activity,
    ChildSaga,
    Command,
    Http,
    Step,
    StepContext,
    Timer,
)
from sagaloom._saga._holding import merge_patch
from sagaloom._saga._model import BrokerCommand, HttpRequest, HttpResponse, Reply
from sagaloom._saga._outage import COMMAND_SILENT_ACTIVITY
from sagaloom._wire._names import (
    COMMAND_ACTIVITY,
    COMMAND_ASK_ACTIVITY,
    HTTP_ACTIVITY,
    ask_activity_id,
    compensation_activity_id,
    step_key,
)

__all__ = ["DEFAULT_COMMAND_REPLY_TIMEOUT", "Dispatcher", "jsonable"]

DEFAULT_COMMAND_REPLY_TIMEOUT = timedelta(minutes=5)
"""How long a :class:`Command` step waits for its reply unless ``reply_timeout`` says."""
MIN_ASK_WINDOW = timedelta(seconds=1)
"""The shortest ask activity (a command's send and its reply's wait), even at a budget's end."""
ASK_ATTEMPT = timedelta(seconds=30)
"""One attempt of an ask: a worker killed before its publish delays the command this long."""
ASK_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), backoff_coefficient=1.0)
"""An ask's attempts follow each other until its reply timeout (``schedule_to_close``)."""


def jsonable(value: Any) -> Any:
    """Turn a builder's result into what is stored in outputs and history (JSON-able)."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    return value


@dataclass(frozen=True)
class _Send:
    """One broker command of a step (or its undo), as each send of it publishes it."""

    step: Step
    action: Command
    body: Any
    correlation: str
    """Also the step's idempotency key."""
    activity_id: str
    summary: str
    timeouts: _Timeouts
    local: bool


@dataclass(frozen=True)
class _Timeouts:
    start_to_close: timedelta
    schedule_to_close: timedelta | None
    heartbeat: timedelta | None
    retry: RetryPolicy


class Dispatcher:
    """Runs a step's action or compensation the way its kind and the step's policy say."""

    def __init__(
        self, progress: Progress, children: Children, replies: Replies, waits: ServiceWaits
    ) -> None:
        self._progress = progress
        self._children = children
        self._replies = replies
        self._waits = waits
        self._sends: dict[str, int] = {}

    async def run(
        self,
        name: str,
        action: Action,
        ctx: StepContext[Any],
        summary: str,
        *,
        undo: bool,
        patch: dict[str, Any] | None = None,
    ) -> Any:
        """Run ``action`` for step ``name`` (its compensation when ``undo``); return its output.

        The forward action's request is recorded for the compensation's builders, and the
        attempts reported by the HTTP activity in the step's live state. ``patch``: an
        operator's JSON merge patch of the request (a redrive's), recorded as sent.
        """
        saga, progress = self._progress.saga, self._progress
        step = saga.steps[saga.position[name]]
        if isinstance(action, Timer):
            duration = action.duration(ctx) if callable(action.duration) else action.duration
            await workflow.sleep(duration, summary=summary)
            return None
        if isinstance(action, ChildSaga):
            arg = jsonable(action.input(ctx))
            progress.record_input(step.name, arg)
            return await self._children.run(step.name, action, arg, summary)
        timeouts = self._timeouts(step, undo=undo)
        local = step.local if step.local is not None else saga.local_activities
        keyed = progress.key_name(step.name)
        activity_id = compensation_activity_id(keyed) if undo else keyed
        if isinstance(action, Http):
            path = action.path(ctx) if callable(action.path) else action.path
            body = jsonable(action.body(ctx)) if action.body is not None else None
            body = merge_patch(body, patch) if patch is not None else body
            if not undo:
                progress.record_input(step.name, body)
            guarded = not undo and self._breaker_on(step)
            request = HttpRequest(
                service=action.service, method=action.method, path=path, body=body, breaker=guarded
            )
            while True:
                try:
                    response = await _call(
                        HTTP_ACTIVITY,
                        [request],
                        HttpResponse,
                        activity_id,
                        summary,
                        timeouts,
                        local,
                    )
                    break
                except FailureError as err:
                    held_by = breaker_open(err) if guarded else None
                    if held_by is None:
                        raise
                    # its service is down, or an operator holds the step: wait, then call again
                    await self._waits.wait(step.name, held_by or action.service)
                    request = request.model_copy(update={"released": True})
            if undo:
                progress.step(name).compensation_attempts = response.attempt
            else:
                progress.step(name).attempts = response.attempt
            return response.body
        if isinstance(action, Command):
            return await self._command(step, action, ctx, summary, timeouts, undo=undo, patch=patch)
        assert isinstance(action, Activity)
        arg = jsonable(action.arg(ctx)) if action.arg is not None else None
        arg = merge_patch(arg, patch) if patch is not None else arg
        if not undo:
            progress.record_input(step.name, arg)
        args: list[Any] = [] if action.arg is None else [arg]
        result_type = None if undo else step.output
        timeouts = replace(timeouts, heartbeat=None)  # user activities may not beat
        return await _call(
            action.activity, args, result_type, activity_id, summary, timeouts, local
        )

    async def _command(
        self,
        step: Step,
        action: Command,
        ctx: StepContext[Any],
        summary: str,
        timeouts: _Timeouts,
        *,
        undo: bool,
        patch: dict[str, Any] | None = None,
    ) -> Any:
        """Publish a broker command, then wait for the participant's reply.

        Raises:
            ReplyFailed: (forward) a negative reply, or none in time.
            ApplicationError: (compensation) the same, as a failure the undo loop handles.
        """
        body = jsonable(action.body(ctx)) if action.body is not None else None
        body = merge_patch(body, patch) if patch is not None else body
        if not undo:
            self._progress.record_input(step.name, body)
        keyed = self._progress.key_name(step.name)
        command = _Send(
            step=step,
            action=action,
            body=body,
            correlation=step_key(ctx.saga_id, keyed, undo=undo),
            activity_id=compensation_activity_id(keyed) if undo else keyed,
            summary=summary,
            timeouts=timeouts,
            local=step.local if step.local is not None else self._progress.saga.local_activities,
        )
        # the reply may come before the publish returns
        self._replies.expect(command.correlation)
        if undo:
            return await self._undo_command(command)
        if self._breaker_on(step):
            return await self._guarded_command(command)
        within = step.reply_timeout or DEFAULT_COMMAND_REPLY_TIMEOUT
        try:
            return await self._exchange(command, within, last=True)
        except ReplyFailed as err:
            if undo:
                raise ApplicationError(str(err), type="ReplyFailed") from None
            raise

    async def _guarded_command(self, command: _Send) -> Any:
        """A forward command whose service has a breaker: wait while its participant is down.

        It is not sent while the breaker is open (the step waits first). When no reply comes
        in time, a worker looks at the service's consumers: none takes its commands, so the
        participant is down; its breaker opens and the step waits for it, still taking the
        reply should it come meanwhile (the command stays in the stream and is applied when
        the participant is back), then waits for the reply again. A consumer that takes them
        means the participant is up but silent: the step fails as without a breaker.

        Raises:
            ReplyFailed: a negative reply, or none in time from a participant that is up.
            ApplicationError: ``OutageBudgetSpent``: the participant was down too long.
        """
        step, correlation = command.step, command.correlation
        service = command.action.service_name
        within = step.reply_timeout or DEFAULT_COMMAND_REPLY_TIMEOUT
        sent = released = False
        while True:
            try:
                if not sent:
                    return await self._exchange(
                        command, within, last=False, breaker=True, released=released
                    )
                return await self._replies.wait(correlation, within, step.name, last=False)
            except FailureError as err:  # the send failed: nothing was sent
                held_by = breaker_open(err)
                if held_by is None:
                    self._replies.forget(correlation)
                    raise
                await self._hold(step.name, held_by or service, correlation)
                released = True
                continue
            except ReplyFailed as err:
                sent = True
                if not err.timed_out or not await self._participant_down(
                    command, service, err, within
                ):
                    self._replies.forget(correlation)
                    raise
            await self._hold(step.name, service, correlation)

    async def _hold(self, step: str, service: str, correlation: str) -> None:
        """Wait for ``service``'s breaker; a reply to ``correlation`` ends the wait early."""
        try:
            await self._waits.wait(step, service, until=lambda: self._replies.arrived(correlation))
        except ApplicationError:  # the outage budget is spent
            self._replies.forget(correlation)
            raise

    async def _participant_down(
        self, command: _Send, service: str, late: ReplyFailed, within: timedelta
    ) -> bool:
        """Whether no consumer takes ``service``'s commands (its breaker is then told)."""
        try:
            down: bool = await workflow.execute_activity(
                COMMAND_SILENT_ACTIVITY,
                args=[service, str(late), within.total_seconds()],
                result_type=bool,
                activity_id=f"{command.activity_id}:down",
                summary=f"is {service} down?",
                start_to_close_timeout=timedelta(seconds=20),
                retry_policy=RetryPolicy(maximum_attempts=3),
            )
        except FailureError:  # the broker cannot tell: the late reply stands
            return False
        return down

    async def _exchange(
        self,
        command: _Send,
        within: timedelta,
        *,
        last: bool,
        breaker: bool = False,
        released: bool = False,
    ) -> Any:
        """Send a command once and wait up to ``within`` for its reply; return the reply's data.

        A regular activity sends it with the ask activity, which the reply completes: the reply
        is its result. A reply through the update meanwhile (an operator's, or a late one to an
        earlier send) ends the wait too, and the ask is cancelled. A local activity (the fast
        path) publishes, then waits for the update.

        Args:
            command: The command.
            within: How long to wait for the reply.
            last: False when the command may be sent again after a timeout (see
                :meth:`Replies.wait`).
            breaker: Ask the service's breaker first (an open one fails the send: nothing sent).
            released: The breaker has just let it go: send without asking again.

        Raises:
            ReplyFailed: a negative reply, or none in time.
            FailureError: the send failed (``ServiceBreakerOpen``: nothing was sent).
        """
        correlation, step = command.correlation, command.step.name
        self._sends[correlation] = sends = self._sends.get(correlation, 0) + 1
        action = command.action
        message = BrokerCommand(
            subject=action.subject,
            body=command.body,
            correlation_id=correlation,
            msg_id=f"{correlation}#{sends}",  # each send is new: its reply is too
            service=action.service_name if breaker else "",
            breaker=breaker,
            released=released,
        )
        if command.local:
            await _call(
                COMMAND_ACTIVITY,
                [message],
                None,
                command.activity_id,
                command.summary,
                command.timeouts,
                command.local,
            )
            return await self._replies.wait(correlation, within, step, last=last)
        return await self._ask(command, message, within, last=last)

    async def _ask(
        self, command: _Send, message: BrokerCommand, within: timedelta, *, last: bool
    ) -> Any:
        """Send ``message`` with the ask activity and take the reply it ends with (or the update's).

        Raises:
            ReplyFailed: a negative reply, or none in time.
            FailureError: the send failed.
        """
        correlation, step = command.correlation, command.step.name
        window = max(within, MIN_ASK_WINDOW)
        ask = asyncio.ensure_future(
            workflow.execute_activity(
                COMMAND_ASK_ACTIVITY,
                args=[message],
                result_type=Reply,
                activity_id=ask_activity_id(command.activity_id),
                summary=command.summary,
                start_to_close_timeout=min(window, ASK_ATTEMPT),
                schedule_to_close_timeout=window,  # the reply timeout, over all attempts
                retry_policy=ASK_RETRY,
                cancellation_type=ActivityCancellationType.TRY_CANCEL,  # nothing to wait for
            )
        )
        try:
            await workflow.wait_condition(lambda: ask.done() or self._replies.arrived(correlation))
        except GeneratorExit:
            raise  # evicted from the worker's cache: no workflow call may run now
        except BaseException:  # the saga is cancelled
            await _drop(ask)
            raise
        if not ask.done():  # the reply came through the update
            await _drop(ask)
            return await self._replies.wait(correlation, within, step, last=last)
        try:
            reply: Reply = ask.result()
        except ActivityError as err:
            if not isinstance(err.cause, TimeoutError):
                raise
            if self._replies.arrived(correlation):  # through the update, as the ask timed out
                return await self._replies.wait(correlation, within, step, last=last)
            if last:
                self._replies.forget(correlation)
            raise ReplyFailed(f"ReplyTimeout: no reply within {within}", timed_out=True) from None
        return self._replies.answered(correlation, reply)

    async def _undo_command(self, command: _Send) -> Any:
        """Send an undo command until a reply comes or the compensation budget is spent.

        A silent participant gets the command again after each reply timeout, with the
        compensation retry policy's back-off between sends: the same body, ``Idempotency-Key``
        and correlation id, a new ``Nats-Msg-Id`` (``<correlation id>#<n>``). A reply to any
        earlier send is taken meanwhile. A negative reply fails at once (the participant
        answered), as does a budget spent; either parks the saga for an operator.

        Raises:
            ApplicationError: ``ReplyFailed``, for the undo loop.
        """
        step, correlation = command.step, command.correlation
        within = step.reply_timeout or DEFAULT_COMMAND_REPLY_TIMEOUT
        budget, retry = command.timeouts.schedule_to_close, command.timeouts.retry
        begin, pause = workflow.now(), retry.initial_interval
        while True:
            left = None if budget is None else budget - (workflow.now() - begin)
            wait = within if left is None else max(min(within, left), timedelta(0))
            try:
                return await self._exchange(command, wait, last=False)
            except ReplyFailed as err:
                sends = self._sends[correlation]
                spent = budget is not None and workflow.now() - begin >= budget
                if not err.timed_out or spent:
                    self._replies.forget(correlation)
                    why = f"{err} (after {sends} send(s))" if err.timed_out else str(err)
                    raise ApplicationError(why, type="ReplyFailed") from None
            workflow.logger.warning(
                "saga %s: no reply to %s (send %d) within %s: sending it again in %s",
                workflow.info().workflow_id,
                correlation,
                sends,
                within,
                pause,
            )
            try:  # a late reply to an earlier send is taken during the pause too
                return await self._replies.wait(correlation, pause, step.name, last=False)
            except ReplyFailed as err:
                if not err.timed_out:
                    self._replies.forget(correlation)
                    raise ApplicationError(str(err), type="ReplyFailed") from None
            pause = min(pause * retry.backoff_coefficient, retry.maximum_interval or pause * 100)

    def _breaker_on(self, step: Step) -> bool:
        """Whether the step waits for its service's breaker."""
        return step.breaker if step.breaker is not None else self._progress.saga.breaker

    def _timeouts(self, step: Step, *, undo: bool) -> _Timeouts:
        saga, defaults = self._progress.saga, self._progress.saga.defaults
        if undo:
            return _Timeouts(
                defaults.compensation_start_to_close,
                defaults.compensation_budget,
                defaults.heartbeat,
                step.compensation_retry or defaults.compensation_retry,
            )
        return _Timeouts(
            step.start_to_close or defaults.start_to_close,
            step.schedule_to_close or defaults.schedule_to_close,
            defaults.heartbeat,
            saga.step_retry(step),
        )


async def _drop(ask: asyncio.Future[Any]) -> None:
    """Cancel an ask nobody waits for any more (its reply, should it come, changes nothing)."""
    ask.cancel()
    with contextlib.suppress(asyncio.CancelledError, FailureError):
        await ask


async def _call(
    activity: str | Callable[..., Any],
    args: list[Any],
    result_type: type | None,
    activity_id: str,
    summary: str,
    timeouts: _Timeouts,
    local: bool,
) -> Any:
    """Run an activity, as a regular one or (the fast path) as a local one.

    Local activities run inside the worker that runs the workflow task and are recorded as
    markers: fewer round trips to the server, the same retries, timeouts and ids.
    """
    fn = cast(Any, activity)  # a registered name or an @activity.defn function
    options: dict[str, Any] = {
        "args": args,
        "result_type": result_type,
        "activity_id": activity_id,
        "summary": summary,
        "start_to_close_timeout": timeouts.start_to_close,
        "schedule_to_close_timeout": timeouts.schedule_to_close,
        "retry_policy": timeouts.retry,
        "cancellation_type": ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
    }
    if local:
        return await workflow.execute_local_activity(fn, **options)
    return await workflow.execute_activity(fn, heartbeat_timeout=timeouts.heartbeat, **options)
