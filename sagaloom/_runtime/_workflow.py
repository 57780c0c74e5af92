"""The saga workflow: a :class:`Saga` definition's life as a Temporal workflow.

Rules it keeps:

* a step's compensation is registered before the step starts, and runs unless the step failed
  with a non-retryable error (the participant refused, so nothing took effect); a step that timed
  out or ran out of retries may have taken effect, so it is undone;
* when a step fails for good, the started steps are compensated in reverse topological order
  and the workflow fails with an ``ApplicationError`` of type ``SagaCompensated`` whose details
  hold a :class:`SagaReport` (so the Web UI never shows a compensated saga as "Completed");
* when the saga is cancelled, during an activity or a timer, the started steps are compensated in
  a task that cancellation cannot reach, then the workflow ends CANCELED;
* a compensation that fails for good parks the saga in NEEDS_ATTENTION until an operator
  resolves it (the ``resolve`` update): retry, skip with a reason, or mark done by hand;
* a step with a ``patch`` id is skipped by runs that started before it was added.

The concerns live beside it: one step forward and back (``_step``), the record
(``_progress``), action dispatch (``_actions``), parking (``_parking``), child sagas
(``_children``), replies (``_replies``), the graph loop and shielding (``_concurrent``); which
step may run or be undone is decided by the pure functions of ``sagaloom._saga._schedule``.
Deterministic and sandbox-safe: no I/O, clock or randomness but through ``temporalio.workflow``.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
from datetime import timedelta
from typing import Any, ClassVar

from pydantic import BaseModel
from temporalio import workflow
from temporalio.exceptions import ApplicationError, is_cancelled_exception

from sagaloom._runtime._actions import Dispatcher
from sagaloom._runtime._answers import EarlyAnswers
from sagaloom._runtime._children import Children
from sagaloom._runtime._concurrent import run_as_ready, shielded
from sagaloom._runtime._exclusive import ExclusiveTimeout, SagaKeys
from sagaloom._runtime._failures import StepFailed, describe
from sagaloom._runtime._fanout import FanOut
from sagaloom._runtime._line import check_release_line
from sagaloom._runtime._notice import notify_end
from sagaloom._runtime._parking import Parking
from sagaloom._runtime._progress import Progress
from sagaloom._runtime._replies import Replies
from sagaloom._runtime._step import StepRunner
from sagaloom._runtime._waits import ServiceWaits
from sagaloom._saga._definition import ForEach, Saga, SagaInputError, undoable
from sagaloom._saga._model import (
    EXCLUSIVE_TIMEOUT,
    SAGA_COMPENSATED,
    SAGA_COMPENSATION_FAILED,
    SAGA_INPUT_ERROR,
    ChildDone,
    Reply,
    Resolution,
    SagaReport,
    SagaState,
    SagaStatus,
    StepStatus,
)
from sagaloom._saga._outage import RELEASED_SIGNAL, ReleaseNotice
from sagaloom._saga._schedule import ready_to_run, ready_to_undo
from sagaloom._wire._names import (
    CHILD_DONE_SIGNAL,
    KEY_GRANTED_SIGNAL,
    PARENT_SIGNAL,
    REPLY_UPDATE,
    RESOLVE_UPDATE,
    SAGA_KEY,
    SAGA_NAME,
    SAGA_STATUS,
    SAGALOOM_VERSION,
    STATE_QUERY,
    WAIT_UPDATE,
)
from sagaloom._wire._release import VERSION

__all__ = ["SagaWorkflow"]


class SagaWorkflow:
    """Base class of every saga workflow; built by :func:`saga_workflow`, not subclassed by hand."""

    saga: ClassVar[Saga[Any]]

    def __init__(self) -> None:
        self._progress = Progress(self.saga)
        self._parking = Parking(self._progress)
        self._children = Children()
        self._replies = Replies()
        self._answers = EarlyAnswers(self._progress)
        self._waits = ServiceWaits(self._progress)
        self._keys = SagaKeys(self._progress)
        actions = Dispatcher(self._progress, self._children, self._replies, self._waits)
        self._steps = StepRunner(
            self._progress,
            actions,
            self._parking,
            self._replies,
            self._children,
            FanOut(self._progress),
        )

    # -- handlers: Temporal wants them on the class; each hands over to its concern ------------

    @workflow.query(name=STATE_QUERY)
    def saga_state(self) -> SagaState:
        """Return the saga's live state: status and each step's status, attempts and errors."""
        return self._progress.state

    @workflow.update(name=RESOLVE_UPDATE)
    async def resolve(self, resolution: Resolution) -> SagaState:
        """Resolve a saga parked on a failed compensation (see :class:`Resolution`)."""
        return self._parking.decide(resolution)

    @resolve.validator
    def _check_resolution(self, resolution: Resolution) -> None:
        self._parking.check(resolution)

    @workflow.update(name=REPLY_UPDATE)
    def participant_reply(self, reply: Reply) -> None:
        """An asynchronous participant's reply to a step's command."""
        self._replies.take(reply)

    @participant_reply.validator
    def _check_reply(self, reply: Reply) -> None:
        self._replies.check(reply)

    @workflow.update(name=WAIT_UPDATE)
    async def wait_for_step(self, step: str) -> Any:
        """Answer early: the step's output once done, or the saga's failure if decided first."""
        return await self._answers.wait(step)

    @wait_for_step.validator
    def _check_wait(self, step: str) -> None:
        self._answers.check(step)

    @workflow.signal(name=CHILD_DONE_SIGNAL)
    def on_child_done(self, done: ChildDone) -> None:
        """A child saga's steps are done; it waits for this saga's decision."""
        self._children.child_done(done)

    @workflow.signal(name=PARENT_SIGNAL)
    def on_parent(self, decision: str) -> None:
        """The parent saga's decision for this held child: ``release`` or ``compensate``."""
        self._children.parent_says(decision)

    @workflow.signal(name=RELEASED_SIGNAL)
    def on_service_released(self, notice: ReleaseNotice) -> None:
        """A service's breaker lets a waiting step call again (or tells it to give up)."""
        self._waits.take(notice)

    @workflow.signal(name=KEY_GRANTED_SIGNAL)
    def on_key_granted(self, key: str) -> None:
        """An exclusive key the saga waited for is its own now."""
        self._keys.on_granted(key)

    # -- the life of a saga --------------------------------------------------------------------

    async def _execute(self, raw_input: Any) -> SagaReport:
        check_release_line()
        events = self._progress.events
        publisher = asyncio.ensure_future(events.publish()) if self.saga.events else None
        try:
            report = await self._live(raw_input)
        except GeneratorExit:
            raise  # garbage-collected after its worker dropped it: nothing runs in its name now
        except BaseException:
            await self._close(publisher)
            raise
        await self._close(publisher)
        return report

    async def _close(self, publisher: asyncio.Future[None] | None) -> None:
        """However the saga ended: let handlers finish, free its keys, tell, publish the rest."""
        # a caller waiting for an early answer hears the outcome before the run closes
        await workflow.wait_condition(workflow.all_handlers_finished)
        await shielded(self._keys.release())  # the next saga waiting for a key goes on
        await shielded(notify_end(self._progress))  # participants holding locks for it
        if publisher is not None:  # every lifecycle event is out before the run closes
            self._progress.events.close()
            await publisher

    async def _live(self, raw_input: Any) -> SagaReport:
        saga, progress, state = self.saga, self._progress, self._progress.state
        progress.begin()
        try:
            data = saga.parse_input(raw_input)
        except SagaInputError as err:
            # Fail the run cleanly instead of retrying the workflow task forever.
            progress.set_status(SagaStatus.FAILED, error=str(err))
            raise ApplicationError(
                str(err), [list(p) for p in err.problems], type=SAGA_INPUT_ERROR, non_retryable=True
            ) from None
        state.key = saga.key(data) if saga.key else None
        progress.events.emit("saga.started", state.key)
        labels = workflow.info().typed_search_attributes
        if labels.get(SAGA_NAME) != saga.name or labels.get(SAGALOOM_VERSION) is None:
            # Started by a plain client: label the run (start_saga labels it at start).
            progress.upsert(
                SAGA_NAME.value_set(saga.name),
                SAGA_STATUS.value_set(SagaStatus.RUNNING),
                SAGALOOM_VERSION.value_set(VERSION),
                *([SAGA_KEY.value_set(state.key)] if state.key else []),
            )
        try:
            await self._take_keys(data)
            await self._forward_all(data)
        except ExclusiveTimeout as waited:  # before any step: nothing to compensate
            progress.set_status(SagaStatus.FAILED, error=str(waited))
            raise ApplicationError(
                str(waited), type=EXCLUSIVE_TIMEOUT, non_retryable=True
            ) from None
        except StepFailed as failed:
            state.failed_step, state.error = failed.step, describe(failed.error)
            await shielded(self._compensate(data))
            why = f"compensated: step {failed.step} failed: {state.error}"
            raise self._compensated(why) from None
        except BaseException as err:
            if not is_cancelled_exception(err):
                raise
            state.error = "cancelled"
            workflow.logger.info("saga %s cancelled: compensating", saga.name)
            await self._undo_cancelled(data)
            raise
        try:
            decision = await self._children.parent_decision(dict(progress.outputs))
        except BaseException as err:
            if not is_cancelled_exception(err):
                raise
            await self._undo_cancelled(data)  # cancelled while held: undo it all
            raise
        if decision == "compensate":
            state.error = "compensated by its parent saga"
            await shielded(self._compensate(data))
            raise self._compensated(state.error)
        if self._children.holds_any():
            await self._release_children(data)
        progress.set_status(SagaStatus.COMPLETED)
        return progress.report()

    async def _take_keys(self, data: BaseModel) -> None:
        """Take the saga's exclusive keys, in order, waiting for each (before the first step)."""
        keys = self.saga.exclusive_keys(data)
        if not keys:
            return
        taken = self._keys.taken_at_start(keys)
        await self._keys.take(keys, self.saga.exclusive_timeout, taken=taken)

    async def _release_children(self, data: BaseModel) -> None:
        """Every step is done: let the held child sagas complete too.

        Decided: a cancel arriving now is too late (as for a completed saga), so the release is
        shielded. A child that ended otherwise meanwhile (an operator cancelled it while held)
        undid its steps: the saga then compensates its own.
        """
        gone = await shielded(self._children.release())
        if gone:
            state = self._progress.state
            step, err = gone[0]
            state.failed_step, state.error = step, describe(err)
            await shielded(self._compensate(data))
            raise self._compensated(f"step {step} ended without completing: {state.error}")

    async def _undo_cancelled(self, data: BaseModel) -> None:
        """The saga was cancelled: compensate in a task cancellation cannot reach."""
        self._unrecorded_may_have_run()
        await shielded(self._compensate(data))
        self._progress.set_status(SagaStatus.CANCELED)

    def _unrecorded_may_have_run(self) -> None:
        """On the fast path, register every later step for undo before a cancel or deadline.

        Local activities run inside a workflow task and are recorded when it completes. A cancel
        request (or the deadline's timer) arriving meanwhile makes the server refuse that
        completion, and the steps the task ran take effect without a trace in history; the
        retried task then takes the cancelled way. So every step with a compensation is undone
        — a step that never ran gets an undo of nothing, which participants answer with a
        tombstone (their idempotency rule) — and nothing is left half-done.
        """
        saga, progress = self.saga, self._progress
        local = [s.local if s.local is not None else saga.local_activities for s in saga.steps]
        if not any(local):
            return
        for index, step in enumerate(saga.steps):
            if isinstance(step.action, ForEach):  # its items are never local activities
                continue
            if local[index] and undoable(step) and not progress.registered(step.name):
                progress.register(step.name, unrecorded=True)
                if progress.step(step.name).status is StepStatus.PENDING:
                    progress.step(step.name).status = StepStatus.SKIPPED

    def _compensated(self, why: str) -> ApplicationError:
        """The failure a compensated saga ends with: its report as the first detail."""
        return ApplicationError(
            f"saga {self.saga.name} {why}",
            self._progress.report(),
            type=SAGA_COMPENSATED,
            non_retryable=True,
        )

    async def _forward_all(self, data: BaseModel) -> None:
        """Run the steps, within the saga's deadline when it has one.

        Raises:
            StepFailed: when a step fails for good, or the deadline passes (the running step
                is cancelled first and counts as the failed one).
        """
        deadline = self.saga.deadline
        if deadline is None:
            await self._forward_graph(data)
            return
        steps = asyncio.ensure_future(self._forward_graph(data))
        left = deadline - (workflow.now() - workflow.info().start_time)
        try:
            await workflow.wait_condition(
                steps.done, timeout=max(left, timedelta(0)), timeout_summary="saga deadline"
            )
        except builtins.TimeoutError:  # (temporalio's TimeoutError is a different class)
            running = self._progress.state.parked_step or next(  # a held step is the running one
                (s.name for s in self._progress.state.steps if s.status is StepStatus.RUNNING),
                self.saga.steps[-1].name,
            )
            steps.cancel()
            with contextlib.suppress(BaseException):
                await steps  # the running step ends cancelled; its compensation stays registered
            self._unrecorded_may_have_run()
            raise StepFailed(
                running,
                ApplicationError(f"deadline of {deadline} passed", type="DeadlineExceeded"),
            ) from None
        except GeneratorExit:
            raise  # evicted from the worker's cache: no workflow call may run now
        except BaseException:  # the saga itself was cancelled: stop the steps first
            steps.cancel()
            with contextlib.suppress(BaseException):
                await steps
            raise
        await steps

    async def _forward_graph(self, data: BaseModel) -> None:
        """Run every step once its dependencies are done; independent steps run at once."""
        saga = self.saga
        names = [s.name for s in saga.steps]
        if saga.graph.sequential:
            for name in names:
                await self._steps.forward(name, data)
            return
        await run_as_ready(
            names,
            lambda waiting, finished: ready_to_run(saga.graph.depends_on, waiting, finished),
            lambda name: self._steps.forward(name, data),
            saga.position.__getitem__,
        )

    async def _compensate(self, data: BaseModel) -> None:
        """Undo the started steps in reverse topological order.

        One at a time in reverse start order, or with ``parallel_compensation`` each as soon as
        every started step that depends on it is undone. A compensation that fails for good
        parks the saga (NEEDS_ATTENTION) until an operator resolves it with the ``resolve``
        update (retry, skip, mark done by hand), or with ``continue_on_compensation_error`` is
        recorded and the rest go on; the saga then fails with every failure reported.
        """
        saga, progress = self.saga, self._progress
        progress.set_status(SagaStatus.COMPENSATING)
        order = progress.undo_order()
        if not saga.parallel_compensation:
            for name in order:
                await self._steps.undo(name, data)
        else:
            started = set(order)
            await run_as_ready(
                order,
                lambda todo, undone: ready_to_undo(saga.graph.descendants, started, todo, undone),
                lambda name: self._steps.undo(name, data),
                saga.position.__getitem__,
            )
        failed = progress.failed_compensations()
        if failed:
            progress.set_status(SagaStatus.FAILED)
            raise ApplicationError(
                f"saga {saga.name}: {len(failed)} compensation(s) failed: "
                + "; ".join(f"{c.step}: {c.error}" for c in failed),
                progress.report(),
                type=SAGA_COMPENSATION_FAILED,
                non_retryable=True,
            )
        progress.set_status(SagaStatus.COMPENSATED)
