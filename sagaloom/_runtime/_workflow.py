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

The concerns live beside it: the record (``_progress``), action dispatch (``_actions``),
parking (``_parking``), child sagas (``_children``), replies (``_replies``); which step may run
or be undone is decided by the pure functions of ``sagaloom._schedule``. Deterministic and
sandbox-safe: no I/O, clock or randomness but through ``temporalio.workflow``.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import sys
from collections.abc import Awaitable
from datetime import timedelta
from typing import Any, ClassVar, TypeVar

from pydantic import BaseModel, ValidationError
from temporalio import workflow
from temporalio.exceptions import ApplicationError, FailureError, is_cancelled_exception

from sagaloom._definition import (
    ChildSaga,
    Saga,
    SagaDefinitionError,
    SagaInputError,
    StepContext,
    UndoContext,
)
from sagaloom._model import (
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
from sagaloom._names import (
    CHILD_DONE_SIGNAL,
    PARENT_SIGNAL,
    REPLY_SIGNAL,
    REPLY_UPDATE,
    RESOLVE_UPDATE,
    SAGA_KEY,
    SAGA_NAME,
    SAGA_STATUS,
    SAGA_STEP,
    STATE_QUERY,
)
from sagaloom._runtime._actions import Dispatcher, jsonable
from sagaloom._runtime._children import Children
from sagaloom._runtime._concurrent import run_as_ready
from sagaloom._runtime._errors import StepFailed, attempt_of, cancelled, describe, refused
from sagaloom._runtime._parking import Parking
from sagaloom._runtime._progress import Progress
from sagaloom._runtime._replies import Replies, ReplyFailed
from sagaloom._schedule import ready_to_run, ready_to_undo

__all__ = ["SagaWorkflow", "check_importable", "saga_workflow"]

_T = TypeVar("_T")


class SagaWorkflow:
    """Base class of every saga workflow; built by :func:`saga_workflow`, not subclassed by hand."""

    saga: ClassVar[Saga[Any]]

    def __init__(self) -> None:
        self._progress = Progress(self.saga)
        self._parking = Parking(self._progress)
        self._children = Children()
        self._replies = Replies()
        self._actions = Dispatcher(self._progress, self._children)

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

    @workflow.signal(name=REPLY_SIGNAL)
    def on_reply_signal(self, reply: Reply) -> None:
        """A reply as a signal: only sagas started before the update take it."""
        self._replies.offer_signal(reply)

    @workflow.signal(name=CHILD_DONE_SIGNAL)
    def on_child_done(self, done: ChildDone) -> None:
        """A child saga's steps are done; it waits for this saga's decision."""
        self._children.child_done(done)

    @workflow.signal(name=PARENT_SIGNAL)
    def on_parent(self, decision: str) -> None:
        """The parent saga's decision for this held child: ``release`` or ``compensate``."""
        self._children.parent_says(decision)

    # -- the life of a saga --------------------------------------------------------------------

    async def _execute(self, raw_input: Any) -> SagaReport:
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
        if workflow.info().typed_search_attributes.get(SAGA_NAME) != saga.name:
            # Started by a plain client: label the run (start_saga labels it at start).
            progress.upsert(
                SAGA_NAME.value_set(saga.name),
                SAGA_STATUS.value_set(SagaStatus.RUNNING),
                *([SAGA_KEY.value_set(state.key)] if state.key else []),
            )
        try:
            await self._forward_all(data)
        except StepFailed as failed:
            state.failed_step, state.error = failed.step, describe(failed.error)
            await _shielded(self._compensate(data))
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
            await _shielded(self._compensate(data))
            raise self._compensated(state.error)
        await self._children.release()
        progress.set_status(SagaStatus.COMPLETED)
        return progress.report()

    async def _undo_cancelled(self, data: BaseModel) -> None:
        """The saga was cancelled: compensate in a task cancellation cannot reach."""
        await _shielded(self._compensate(data))
        self._progress.set_status(SagaStatus.CANCELED)

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
            running = next(
                (s.name for s in self._progress.state.steps if s.status is StepStatus.RUNNING),
                self.saga.steps[-1].name,
            )
            steps.cancel()
            with contextlib.suppress(BaseException):
                await steps  # the running step ends cancelled; its compensation stays registered
            raise StepFailed(
                running,
                ApplicationError(f"deadline of {deadline} passed", type="DeadlineExceeded"),
            ) from None
        except BaseException:  # the saga itself was cancelled: stop the steps first
            steps.cancel()
            with contextlib.suppress(BaseException):
                await steps
            raise
        await steps

    async def _forward_graph(self, data: BaseModel) -> None:
        """Run every step once its dependencies are done; independent steps run at once."""
        saga = self.saga
        if saga.graph.sequential:
            for index in range(len(saga.steps)):
                await self._forward(index, data)
            return
        names = [s.name for s in saga.steps]
        await run_as_ready(
            range(len(names)),
            lambda waiting, finished: [
                saga.position[n]
                for n in ready_to_run(
                    saga.graph.depends_on, [names[i] for i in waiting], {names[i] for i in finished}
                )
            ],
            lambda index: self._forward(index, data),
        )

    async def _forward(self, index: int, data: BaseModel) -> None:
        """Run step ``index``: skip it, or run it and record its output or why it failed."""
        saga, progress = self.saga, self._progress
        step, state = saga.steps[index], progress.step(index)
        if step.patch is not None and not workflow.patched(step.patch):
            state.status = StepStatus.SKIPPED  # added after this run started: it replays as it ran
            return
        ctx = StepContext(saga_id=workflow.info().workflow_id, input=data, outputs=progress.outputs)
        if step.when is not None and not step.when(ctx):
            state.status = StepStatus.SKIPPED  # its condition is false: never run, never undone
            return
        if step.compensation is not None or isinstance(step.action, ChildSaga):
            progress.started.append(index)  # registered before the step runs
        state.status, state.started_at = StepStatus.RUNNING, workflow.now()
        if saga.track_steps:
            progress.upsert(SAGA_STEP.value_set(step.name))
        summary = f"step {index + 1}/{len(saga.steps)} {step.name}"
        try:
            correlation = f"{ctx.saga_id}:{step.name}"
            if step.reply_timeout is not None:
                self._replies.expect(correlation)  # a reply may arrive before the command returns
            output = jsonable(await self._actions.run(index, step.action, ctx, summary, undo=False))
            if step.reply_timeout is not None:
                output = (
                    await self._replies.wait(correlation, step.reply_timeout, step.name) or output
                )
            if step.output is not None:  # an empty answer does not fit a declared output either
                output = step.output.model_validate(output).model_dump(mode="json")
        except ValidationError as err:
            # It answered 2xx, so it took effect: its compensation stays registered.
            first = err.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "<output>"
            assert step.output is not None
            reason = f"MalformedOutput: {step.output.__name__}.{where}: {first['msg']}"
            progress.step_ended(index, StepStatus.FAILED, reason)
            raise StepFailed(step.name, ApplicationError(reason)) from None
        except ReplyFailed as err:
            progress.step_ended(index, StepStatus.FAILED, str(err))
            self._log_failure(step.name, "failed", str(err))
            raise StepFailed(step.name, ApplicationError(str(err))) from None
        except FailureError as err:  # ActivityError; a local activity's ApplicationError
            if cancelled(err):
                progress.step_ended(index, StepStatus.FAILED, "cancelled")
                if is_cancelled_exception(err):
                    raise
                raise asyncio.CancelledError from None  # cancelled between two attempts
            state.attempts = attempt_of(err) or state.attempts
            progress.step_ended(index, StepStatus.FAILED, describe(err))
            if step.kind == "retriable":  # past the pivot: never undone, so wait for an operator
                decision = await self._parking.park(index, describe(err), forward=True)
                if decision.action == "retry":
                    return await self._forward(index, data)
                state.status = StepStatus.SKIPPED
                return
            listed = saga.step_retry(step).non_retryable_error_types or ()
            if refused(err, list(listed)) and index in progress.started:
                # The participant refused: nothing took effect, so nothing to undo. Any other
                # failure (timeout, retries exhausted) leaves the outcome unknown: undo it.
                progress.started.remove(index)
            self._log_failure(step.name, "failed for good", state.error or "")
            raise StepFailed(step.name, err) from None
        except BaseException:  # cancelled during a timer (asyncio.CancelledError)
            progress.step_ended(index, StepStatus.FAILED, "cancelled")
            raise
        progress.outputs[step.name] = output
        progress.step_ended(index, StepStatus.DONE)

    def _log_failure(self, step: str, how: str, error: str) -> None:
        workflow.logger.warning(
            "saga %s %s: step %s %s: %s",
            self.saga.name,
            workflow.info().workflow_id,
            step,
            how,
            error,
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
        order = list(reversed(progress.started))
        if not saga.parallel_compensation:
            for index in order:
                await self._undo(index, data)
        else:
            names = [s.name for s in saga.steps]
            started = {names[i] for i in order}
            await run_as_ready(
                order,
                lambda todo, undone: [
                    saga.position[n]
                    for n in ready_to_undo(
                        saga.graph.descendants,
                        started,
                        [names[i] for i in todo],
                        {names[i] for i in undone},
                    )
                ],
                lambda index: self._undo(index, data),
            )
        failed = [c for c in progress.compensations if not c.ok and c.resolution is None]
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

    async def _undo(self, index: int, data: BaseModel) -> None:
        """Run one step's compensation until it is done, parked and resolved, or recorded."""
        saga, progress = self.saga, self._progress
        step, state = saga.steps[index], progress.step(index)
        if isinstance(step.action, ChildSaga):
            state.status = StepStatus.COMPENSATING
            await self._children.undo(step.name)
            progress.compensation_ended(index, StepStatus.COMPENSATED, ok=True)
            return
        assert step.compensation is not None
        ctx = UndoContext(
            saga_id=workflow.info().workflow_id,
            input=data,
            outputs=progress.outputs,
            step_input=progress.inputs.get(step.name),
            step_output=progress.outputs.get(step.name),
        )
        summary = f"compensate {index + 1}/{len(saga.steps)} {step.name}"
        while True:
            state.status = StepStatus.COMPENSATING
            if saga.track_steps:
                progress.upsert(SAGA_STEP.value_set(step.name))
            try:
                await self._actions.run(index, step.compensation, ctx, summary, undo=True)
            except FailureError as err:
                if is_cancelled_exception(err):
                    raise
                progress.count_compensation(step.name, ok=False)
                if saga.continue_on_compensation_error:
                    state.compensation_error = describe(err)
                    progress.compensation_ended(
                        index, StepStatus.COMPENSATION_FAILED, ok=False, error=describe(err)
                    )
                    return
                decision = await self._parking.park(index, describe(err))
                if decision.action == "retry":
                    continue
                done = decision.action == "mark_compensated"
                progress.compensation_ended(
                    index,
                    StepStatus.COMPENSATED if done else StepStatus.COMPENSATION_SKIPPED,
                    ok=done,
                    error=decision.error,
                    resolution=f"{decision.action}: {decision.note}".rstrip(": "),
                )
                return
            progress.compensation_ended(index, StepStatus.COMPENSATED, ok=True)
            progress.count_compensation(step.name, ok=True)
            return


async def _shielded(work: Awaitable[_T]) -> _T:
    """Run ``work`` to the end even if the saga is cancelled meanwhile (compensations)."""
    task = asyncio.ensure_future(work)
    while True:
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            if task.done():
                return task.result()


def saga_workflow(saga: Saga[Any]) -> type[SagaWorkflow]:
    """Build the Temporal workflow class that runs ``saga``; register it on a worker.

    Assign the result to a module-level name equal to ``saga.name`` (the workflow sandbox
    re-imports it by that name)::

        OrderSaga = saga_workflow(ORDER)

    Args:
        saga: The saga definition.

    Returns:
        A ``@workflow.defn`` class named ``saga.name`` whose run method takes the saga input
        (a model or its JSON) and returns a :class:`SagaReport`.
    """
    module = sys._getframe(1).f_globals.get("__name__", __name__)

    async def run(self: SagaWorkflow, input: Any) -> SagaReport:
        return await self._execute(input)

    run.__qualname__ = f"{saga.name}.run"
    run.__module__ = module
    namespace = {"saga": saga, "run": workflow.run(run), "__module__": module}
    cls = type(saga.name, (SagaWorkflow,), namespace)
    cls.__qualname__ = saga.name
    cls.__doc__ = saga.description or f"Saga {saga.name}."
    return workflow.defn(name=saga.name)(cls)


def check_importable(cls: type[SagaWorkflow]) -> None:
    """Fail clearly if the sandbox could not re-import ``cls`` by its module and name."""
    module = sys.modules.get(cls.__module__)
    if module is None or getattr(module, cls.__name__, None) is not cls:
        raise SagaDefinitionError(
            f"saga workflow {cls.__name__!r} must be assigned to the module-level name "
            f"{cls.__name__!r} in {cls.__module__}"
        )
