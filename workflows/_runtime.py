"""The saga runtime: runs a :class:`Saga` definition inside a Temporal workflow.

Rules it enforces:

* a step's compensation is registered before the step starts, and runs unless the step failed
  with a non-retryable error (the participant refused, so nothing took effect); a step that timed
  out or ran out of retries may have taken effect, so it is undone;
* when a step fails for good (retries exhausted or a non-retryable error), the started steps are
  compensated in reverse order and the workflow fails with an ``ApplicationError`` of type
  ``SagaCompensated`` whose details hold a :class:`SagaReport` (so the Web UI never shows a
  compensated saga as "Completed");
* when the saga is cancelled, during an activity or a timer, the started steps are compensated in a
  task that cancellation cannot reach, then the workflow ends CANCELED;
* a compensation that fails for good parks the saga in NEEDS_ATTENTION until an operator
  resolves it (the ``resolve`` update): retry, skip with a reason, or mark done by hand;
* a step with a ``patch`` id is skipped by runs that started before it was added;
* every change of status is mirrored into the ``SagaStatus``/``SagaStep`` search attributes.

Deterministic and sandbox-safe: no I/O, clock or randomness but through ``temporalio.workflow``.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import dataclasses
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, ClassVar, TypeVar, cast

from pydantic import BaseModel, ValidationError
from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributeKey, SearchAttributeUpdate
from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    ChildWorkflowError,
    FailureError,
    RetryState,
    TimeoutError,
    is_cancelled_exception,
)
from temporalio.workflow import ActivityCancellationType, ChildWorkflowHandle

from workflows._definition import (
    Activity,
    ChildSaga,
    Http,
    Saga,
    SagaDefinitionError,
    SagaInputError,
    Step,
    StepContext,
    Timer,
    UndoContext,
)
from workflows._metrics import SagaMetrics
from workflows._model import (
    SAGA_COMPENSATED,
    SAGA_COMPENSATION_FAILED,
    SAGA_INPUT_ERROR,
    ChildDone,
    CompensationState,
    Decision,
    HttpRequest,
    HttpResponse,
    Reply,
    Resolution,
    SagaReport,
    SagaState,
    SagaStatus,
    StepState,
    StepStatus,
)

__all__ = [
    "HTTP_ACTIVITY",
    "SAGA_KEY",
    "SAGA_NAME",
    "SAGA_STATUS",
    "SAGA_STEP",
    "SEARCH_ATTRIBUTES",
    "SagaWorkflow",
    "check_importable",
    "compensation_activity_id",
    "saga_workflow",
]

HTTP_ACTIVITY = "sagaloom.http"
HELD_MEMO = "sagaloom.held"
"""Memo set on a child saga started by a parent saga: it stays open for the parent's decision."""
PARENT_SIGNAL = "parent"
"""Registered name of the engine's HTTP participant activity."""

SAGA_NAME = SearchAttributeKey.for_keyword("SagaName")
"""Search attribute: the saga's name."""
SAGA_STATUS = SearchAttributeKey.for_keyword("SagaStatus")
"""Search attribute: the saga's :class:`SagaStatus`."""
SAGA_STEP = SearchAttributeKey.for_keyword("SagaStep")
"""Search attribute: the step running or compensating now (the failed step once compensated)."""
SAGA_KEY = SearchAttributeKey.for_keyword("SagaKey")
"""Search attribute: the business key (for example the order id)."""
SEARCH_ATTRIBUTES: tuple[SearchAttributeKey[str], ...] = (
    SAGA_NAME,
    SAGA_STATUS,
    SAGA_STEP,
    SAGA_KEY,
)
"""Custom search attributes the runtime writes; register them on the namespace (Keyword)."""

_T = TypeVar("_T")


def compensation_activity_id(step: str) -> str:
    """Activity id of a step's compensation (the forward action's activity id is the step name)."""
    return f"{step}:compensate"


def _jsonable(value: Any) -> Any:
    """Turn a builder's result into what is stored in outputs and history (JSON-able)."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    return value


def _describe(err: BaseException) -> str:
    """One line saying why an action failed, from the innermost meaningful cause."""
    cause: BaseException | None = err
    while isinstance(cause, ActivityError) and cause.cause is not None:
        cause = cause.cause
    if isinstance(cause, TimeoutError):
        return f"timed out ({cause.type.name.lower() if cause.type else 'timeout'})"
    if isinstance(cause, ApplicationError):
        kind = f"{cause.type}: " if cause.type else ""
        return f"{kind}{cause.message}"
    return str(cause) or type(cause).__name__


def _attempt_of(err: BaseException) -> int | None:
    """The attempt an activity failure reports in its details (the HTTP activity does)."""
    cause = err.cause if isinstance(err, ActivityError) else err
    if isinstance(cause, ApplicationError) and cause.details:
        first = cause.details[0]
        if isinstance(first, dict) and isinstance(first.get("attempt"), int):
            return int(first["attempt"])
    return None


@dataclass(frozen=True)
class _Timeouts:
    start_to_close: timedelta
    schedule_to_close: timedelta | None
    heartbeat: timedelta | None
    retry: RetryPolicy


class _StepFailed(Exception):
    """A forward action failed for good; carries the original error."""

    def __init__(self, step: str, error: BaseException) -> None:
        super().__init__(f"step {step} failed: {_describe(error)}")
        self.step = step
        self.error = error


class SagaWorkflow:
    """Base class of every saga workflow; built by :func:`saga_workflow`, not subclassed by hand."""

    saga: ClassVar[Saga[Any]]

    def __init__(self) -> None:
        self._state = SagaState(
            saga=self.saga.name,
            steps=[
                StepState(
                    name=s.name, kind=s.action.kind, has_compensation=s.compensation is not None
                )
                for s in self.saga.steps
            ],
        )
        self._outputs: dict[str, Any] = {}
        self._inputs: dict[str, Any] = {}
        self._started: list[int] = []
        self._compensations: list[CompensationState] = []
        self._metrics: SagaMetrics | None = None
        self._resolution: Resolution | None = None
        self._parked_forward = False
        self._children: dict[str, ChildWorkflowHandle[Any, Any]] = {}
        self._child_done: dict[str, ChildDone] = {}
        self._from_parent: str | None = None
        self._awaiting: set[str] = set()
        self._replies: dict[str, Reply] = {}
        self._parking = asyncio.Lock()

    @workflow.query(name="saga_state")
    def saga_state(self) -> SagaState:
        """Return the saga's live state: status and each step's status, attempts and errors."""
        return self._state

    # -- the run -------------------------------------------------------------------------------

    async def _execute(self, raw_input: Any) -> SagaReport:
        saga = self.saga
        self._metrics = SagaMetrics(saga.name)
        self._metrics.started()
        try:
            data = saga.parse_input(raw_input)
        except SagaInputError as err:
            # Fail the run cleanly instead of retrying the workflow task forever.
            self._set_status(SagaStatus.FAILED, error=str(err))
            raise ApplicationError(
                str(err), [list(p) for p in err.problems], type=SAGA_INPUT_ERROR, non_retryable=True
            ) from None
        self._state.key = saga.key(data) if saga.key else None
        if workflow.info().typed_search_attributes.get(SAGA_NAME) != saga.name:
            # Started by a plain client: label the run (start_saga labels it at start).
            self._upsert(
                SAGA_NAME.value_set(saga.name),
                SAGA_STATUS.value_set(SagaStatus.RUNNING),
                *([SAGA_KEY.value_set(self._state.key)] if self._state.key else []),
            )
        try:
            await self._forward_all(data)
        except _StepFailed as failed:
            self._state.failed_step = failed.step
            self._state.error = _describe(failed.error)
            await self._shielded(self._compensate(data))
            raise ApplicationError(
                f"saga {saga.name} compensated: step {failed.step} failed: {self._state.error}",
                self._report(),
                type=SAGA_COMPENSATED,
                non_retryable=True,
            ) from None
        except BaseException as err:
            if not is_cancelled_exception(err):
                raise
            self._state.error = "cancelled"
            workflow.logger.info("saga %s cancelled: compensating", saga.name)
            await self._shielded(self._compensate(data))
            self._set_status(SagaStatus.CANCELED)
            raise
        try:
            await self._held_by_parent(data)
        except BaseException as err:
            if not is_cancelled_exception(err):
                raise
            await self._shielded(self._compensate(data))  # cancelled while held: undo it all
            self._set_status(SagaStatus.CANCELED)
            raise
        await self._release_children()
        self._set_status(SagaStatus.COMPLETED)
        return self._report()

    async def _forward_all(self, data: BaseModel) -> None:
        """Run the steps in order, within the saga's deadline when it has one.

        Raises:
            _StepFailed: when a step fails for good, or the deadline passes (the running step
                is cancelled first and counts as the failed one).
        """
        deadline = self.saga.deadline
        if deadline is None:
            await self._forward_all_unbounded(data)
            return
        steps = asyncio.ensure_future(self._forward_all_unbounded(data))
        left = deadline - (workflow.now() - workflow.info().start_time)
        try:
            await workflow.wait_condition(
                steps.done, timeout=max(left, timedelta(0)), timeout_summary="saga deadline"
            )
        except builtins.TimeoutError:  # (temporalio's TimeoutError is a different class)
            running = next(
                (s.name for s in self._state.steps if s.status is StepStatus.RUNNING),
                self.saga.steps[-1].name,
            )
            steps.cancel()
            with contextlib.suppress(BaseException):
                await steps  # the running step ends cancelled; its compensation stays registered
            raise _StepFailed(
                running,
                ApplicationError(f"deadline of {deadline} passed", type="DeadlineExceeded"),
            ) from None
        except BaseException:  # the saga itself was cancelled: stop the steps first
            steps.cancel()
            with contextlib.suppress(BaseException):
                await steps
            raise
        await steps

    async def _forward_all_unbounded(self, data: BaseModel) -> None:
        """Run every step once its dependencies are done; independent steps run at once.

        When one fails for good (or the saga is cancelled), the branches still running are
        cancelled and awaited before the failure propagates.
        """
        graph, names = self.saga.graph, [s.name for s in self.saga.steps]
        if graph.sequential:
            for index in range(len(names)):
                await self._forward(index, data)
            return
        finished: set[str] = set()
        waiting = list(names)
        running: dict[asyncio.Future[None], int] = {}
        try:
            while waiting or running:
                for name in [n for n in waiting if set(graph.depends_on[n]) <= finished]:
                    waiting.remove(name)
                    index = names.index(name)
                    running[asyncio.ensure_future(self._forward(index, data))] = index
                done, _ = await workflow.wait(list(running), return_when=asyncio.FIRST_COMPLETED)
                for task in sorted(done, key=running.__getitem__):  # deterministic order
                    index = running.pop(task)
                    task.result()  # a step that failed for good raises here
                    finished.add(names[index])
        except BaseException:
            for task in running:
                task.cancel()
            if running:
                await workflow.wait(list(running))
            raise

    async def _forward(self, index: int, data: BaseModel) -> None:
        saga, step, state = self.saga, self.saga.steps[index], self._state.steps[index]
        if step.patch is not None and not workflow.patched(step.patch):
            state.status = StepStatus.SKIPPED  # added after this run started: it replays as it ran
            return
        ctx = StepContext(saga_id=workflow.info().workflow_id, input=data, outputs=self._outputs)
        if step.when is not None and not step.when(ctx):
            state.status = StepStatus.SKIPPED  # its condition is false: never run, never undone
            return
        if step.compensation is not None or isinstance(step.action, ChildSaga):
            self._started.append(index)  # registered before the step runs
        state.status = StepStatus.RUNNING
        state.started_at = workflow.now()
        if saga.track_steps:
            self._upsert(SAGA_STEP.value_set(step.name))
        summary = f"step {index + 1}/{len(saga.steps)} {step.name}"
        try:
            correlation = f"{ctx.saga_id}:{step.name}"
            if step.reply_timeout is not None:
                self._awaiting.add(correlation)  # a reply may arrive before the command returns
            output = _jsonable(
                await self._run_action(step, step.action, ctx, summary, compensation=False)
            )
            if step.reply_timeout is not None:
                output = await self._await_reply(step, correlation) or output
            if step.output is not None and output is not None:
                output = step.output.model_validate(output).model_dump(mode="json")
        except ValidationError as err:
            # It answered 2xx, so it took effect: its compensation stays registered.
            first = err.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "<output>"
            assert step.output is not None
            reason = f"MalformedOutput: {step.output.__name__}.{where}: {first['msg']}"
            self._step_ended(index, StepStatus.FAILED, reason)
            raise _StepFailed(step.name, ApplicationError(reason)) from None
        except FailureError as err:  # ActivityError; a local activity's ApplicationError
            if is_cancelled_exception(err):
                self._step_ended(index, StepStatus.FAILED, "cancelled")
                raise
            state.attempts = _attempt_of(err) or state.attempts
            self._step_ended(index, StepStatus.FAILED, _describe(err))
            if step.kind == "retriable":  # past the pivot: never undone, so wait for an operator
                decision = await self._park(step, _describe(err), forward=True)
                if decision.action == "retry":
                    return await self._forward(index, data)
                state.status = StepStatus.SKIPPED
                return
            if self._refused(step, err) and index in self._started:
                # The participant refused: nothing took effect, so nothing to undo. Any other
                # failure (timeout, retries exhausted) leaves the outcome unknown: undo it.
                self._started.remove(index)
            workflow.logger.warning(
                "saga %s %s: step %s failed for good: %s",
                saga.name,
                ctx.saga_id,
                step.name,
                state.error,
            )
            raise _StepFailed(step.name, err) from None
        except _StepFailed:  # already recorded (no reply, or a negative one)
            raise
        except BaseException:  # cancelled during a timer (asyncio.CancelledError)
            self._step_ended(index, StepStatus.FAILED, "cancelled")
            raise
        self._outputs[step.name] = output
        self._step_ended(index, StepStatus.DONE)

    async def _run_child(
        self, step: Step, child: ChildSaga, ctx: StepContext[Any], summary: str
    ) -> dict[str, Any]:
        """Start the child saga and wait until its steps are done (it then waits, held open)."""
        arg = _jsonable(child.input(ctx))
        self._inputs[step.name] = arg
        child_id = f"{ctx.saga_id}:{step.name}"
        handle = await workflow.start_child_workflow(
            child.saga.name,
            arg,
            id=child_id,
            task_queue=workflow.info().task_queue,
            memo={HELD_MEMO: True},
            static_summary=summary,
        )
        self._children[step.name] = handle
        await workflow.wait_condition(lambda: child_id in self._child_done or handle.done())
        if child_id in self._child_done:
            return self._child_done[child_id].outputs
        await handle  # it failed: compensated itself (ChildWorkflowError)
        return {}

    async def _undo_child(self, step: Step) -> None:
        """Have a child saga compensate itself as a unit, and wait until it has."""
        handle = self._children.get(step.name)
        if handle is None or handle.done():
            return
        if handle.id in self._child_done:
            await handle.signal(PARENT_SIGNAL, "compensate")
        else:
            handle.cancel()  # still running its steps: cancelling it compensates them
        with contextlib.suppress(ChildWorkflowError):
            await handle

    async def _release_children(self) -> None:
        """The parent completed: let every held child saga complete too."""
        held = [h for h in self._children.values() if h.id in self._child_done and not h.done()]
        for handle in held:
            await handle.signal(PARENT_SIGNAL, "release")
        for handle in held:
            await handle

    @workflow.signal(name="child_done")
    def on_child_done(self, done: ChildDone) -> None:
        """A child saga's steps are done; it waits for this saga's decision."""
        self._child_done[done.workflow_id] = done

    @workflow.signal(name=PARENT_SIGNAL)
    def on_parent(self, decision: str) -> None:
        """The parent saga's decision for this held child: ``release`` or ``compensate``."""
        self._from_parent = decision

    async def _held_by_parent(self, data: BaseModel) -> None:
        """As a child saga: report done to the parent, then do what it decides."""
        parent = workflow.info().parent
        if parent is None or not workflow.memo_value(HELD_MEMO, False, type_hint=bool):
            return
        done = ChildDone(workflow_id=workflow.info().workflow_id, outputs=dict(self._outputs))
        await workflow.get_external_workflow_handle(parent.workflow_id).signal("child_done", done)
        await workflow.wait_condition(lambda: self._from_parent is not None)
        if self._from_parent == "compensate":
            self._state.error = "compensated by its parent saga"
            await self._shielded(self._compensate(data))
            raise ApplicationError(
                f"saga {self.saga.name} compensated by its parent saga",
                self._report(),
                type=SAGA_COMPENSATED,
                non_retryable=True,
            )

    async def _await_reply(self, step: Step, correlation: str) -> dict[str, Any]:
        """Wait for the participant's reply to ``step``'s command; fail the step without one."""
        assert step.reply_timeout is not None
        try:
            await workflow.wait_condition(
                lambda: correlation in self._replies,
                timeout=step.reply_timeout,
                timeout_summary=f"reply to {step.name}",
            )
        except builtins.TimeoutError:
            reason = f"ReplyTimeout: no reply within {step.reply_timeout}"
        else:
            reply = self._replies[correlation]
            if reply.ok:
                return reply.data
            reason = f"ReplyNegative: {reply.reason or 'the participant said no'}"
        finally:
            self._awaiting.discard(correlation)
        index = self.saga.steps.index(step)
        self._step_ended(index, StepStatus.FAILED, reason)
        workflow.logger.warning(
            "saga %s %s: step %s failed: %s",
            self.saga.name,
            workflow.info().workflow_id,
            step.name,
            reason,
        )
        raise _StepFailed(step.name, ApplicationError(reason))

    @workflow.signal(name="reply")
    def on_reply(self, reply: Reply) -> None:
        """Take a participant's reply; one that nothing waits for (late, duplicate) is ignored."""
        if reply.correlation_id in self._awaiting and reply.correlation_id not in self._replies:
            self._replies[reply.correlation_id] = reply
        else:
            workflow.logger.info(
                "saga %s: ignored a late or duplicate reply for %s",
                workflow.info().workflow_id,
                reply.correlation_id,
            )

    def _refused(self, step: Step, err: FailureError) -> bool:
        """Whether the step failed with a non-retryable error: the participant said no."""
        if isinstance(err, ChildWorkflowError):
            return True  # the child saga already compensated itself
        if isinstance(err, ActivityError):
            return err.retry_state == RetryState.NON_RETRYABLE_FAILURE
        if isinstance(err, ApplicationError):  # a local activity's failure arrives unwrapped
            listed = self.saga.step_retry(step).non_retryable_error_types or ()
            return err.non_retryable or err.type in listed
        return False

    def _step_ended(self, index: int, status: StepStatus, error: str | None = None) -> None:
        state = self._state.steps[index]
        state.status, state.error, state.ended_at = status, error, workflow.now()
        if self._metrics is not None and state.started_at is not None:
            outcome = "done" if status is StepStatus.DONE else "failed"
            outcome = "cancelled" if error == "cancelled" else outcome
            self._metrics.step(
                state.name, outcome, state.ended_at - state.started_at, state.attempts
            )

    async def _compensate(self, data: BaseModel) -> None:
        """Undo the started steps in reverse topological order.

        One at a time in reverse start order, or with ``parallel_compensation`` each as soon as
        every started step that depends on it is undone. A compensation that fails for good
        parks the saga (NEEDS_ATTENTION) until an operator resolves it with the ``resolve``
        update (retry, skip, mark done by hand), or with ``continue_on_compensation_error`` is
        recorded and the rest go on; the saga then fails with every failure reported.
        """
        self._set_status(SagaStatus.COMPENSATING)
        order = list(reversed(self._started))
        if not self.saga.parallel_compensation:
            for index in order:
                await self._undo(index, data)
        else:
            names = [s.name for s in self.saga.steps]
            descendants = self.saga.graph.descendants
            todo, undone = list(order), set[int]()
            running: dict[asyncio.Future[None], int] = {}
            while todo or running:
                for index in list(todo):
                    later = {names.index(n) for n in descendants[names[index]]} & set(order)
                    if later <= undone:
                        todo.remove(index)
                        running[asyncio.ensure_future(self._undo(index, data))] = index
                done, _ = await workflow.wait(list(running), return_when=asyncio.FIRST_COMPLETED)
                for task in sorted(done, key=running.__getitem__):
                    undone.add(running.pop(task))
                    task.result()
        failed = [c for c in self._compensations if not c.ok and c.resolution is None]
        if failed:
            self._set_status(SagaStatus.FAILED)
            raise ApplicationError(
                f"saga {self.saga.name}: {len(failed)} compensation(s) failed: "
                + "; ".join(f"{c.step}: {c.error}" for c in failed),
                self._report(),
                type=SAGA_COMPENSATION_FAILED,
                non_retryable=True,
            )
        self._set_status(SagaStatus.COMPENSATED)

    async def _undo(self, index: int, data: BaseModel) -> None:
        """Run one step's compensation until it is done, parked and resolved, or recorded."""
        step, state = self.saga.steps[index], self._state.steps[index]
        if isinstance(step.action, ChildSaga):
            state.status = StepStatus.COMPENSATING
            await self._undo_child(step)
            state.status = StepStatus.COMPENSATED
            self._compensations.append(CompensationState(step=step.name, ok=True))
            return
        assert step.compensation is not None
        wid = workflow.info().workflow_id
        ctx = UndoContext(
            saga_id=wid,
            input=data,
            outputs=self._outputs,
            step_input=self._inputs.get(step.name),
            step_output=self._outputs.get(step.name),
        )
        summary = f"compensate {index + 1}/{len(self.saga.steps)} {step.name}"
        while True:
            state.status = StepStatus.COMPENSATING
            if self.saga.track_steps:
                self._upsert(SAGA_STEP.value_set(step.name))
            try:
                await self._run_action(step, step.compensation, ctx, summary, compensation=True)
            except FailureError as err:
                if is_cancelled_exception(err):
                    raise
                self._count_compensation(step.name, ok=False)
                if self.saga.continue_on_compensation_error:
                    state.status, state.compensation_error = (
                        StepStatus.COMPENSATION_FAILED,
                        _describe(err),
                    )
                    self._compensations.append(
                        CompensationState(step=step.name, ok=False, error=_describe(err))
                    )
                    return
                decision = await self._park(step, _describe(err))
                if decision.action == "retry":
                    continue
                done = decision.action == "mark_compensated"
                state.status = StepStatus.COMPENSATED if done else StepStatus.COMPENSATION_SKIPPED
                self._compensations.append(
                    CompensationState(
                        step=step.name,
                        ok=done,
                        error=decision.error,
                        resolution=f"{decision.action}: {decision.note}".rstrip(": "),
                    )
                )
                return
            state.status = StepStatus.COMPENSATED
            self._compensations.append(CompensationState(step=step.name, ok=True))
            self._count_compensation(step.name, ok=True)
            return

    async def _park(self, step: Step, error: str, *, forward: bool = False) -> Decision:
        """Wait, parked in NEEDS_ATTENTION, for an operator's decision on ``step``.

        ``forward``: a retriable step ran out of budget (retry or skip it); otherwise its
        compensation did (retry, skip, or mark it compensated). One step is parked at a time.
        """
        async with self._parking:
            return await self._park_one(step, error, forward=forward)

    async def _park_one(self, step: Step, error: str, *, forward: bool) -> Decision:
        state = self._state.steps[self.saga.steps.index(step)]
        if forward:
            state.status, state.error = StepStatus.FAILED, error
        else:
            state.status, state.compensation_error = StepStatus.COMPENSATION_FAILED, error
        self._parked_forward = forward
        self._state.parked_step = step.name
        self._set_status(SagaStatus.NEEDS_ATTENTION)
        if self._metrics is not None:
            self._metrics.parked()
        wid = workflow.info().workflow_id
        what = "step" if forward else "compensation of"
        choices = "--retry | --skip" if forward else "--retry | --skip | --mark-compensated"
        workflow.logger.error(
            "saga %s %s needs attention: %s %s failed for good: %s (resolve with: saga resolve "
            "%s %s %s)",
            self.saga.name,
            wid,
            what,
            step.name,
            error,
            wid,
            choices,
            step.name,
        )
        await workflow.wait_condition(lambda: self._resolution is not None)
        assert self._resolution is not None
        decision = Decision(
            **self._resolution.model_dump(exclude={"step"}),
            step=step.name,
            at=workflow.now(),
            error=error,
        )
        self._resolution = None
        self._state.parked_step = None
        self._state.decisions.append(decision)
        self._set_status(SagaStatus.RUNNING if forward else SagaStatus.COMPENSATING)
        return decision

    @workflow.update(name="resolve")
    async def resolve(self, resolution: Resolution) -> SagaState:
        """Resolve a saga parked on a failed compensation (see :class:`Resolution`)."""
        self._resolution = resolution
        return self._state

    @resolve.validator
    def _check_resolution(self, resolution: Resolution) -> None:
        parked = self._state.parked_step
        if parked is None or self._resolution is not None:
            raise ValueError(f"saga is not waiting for an operator (status {self._state.status})")
        if self._parked_forward and resolution.action == "mark_compensated":
            raise ValueError(f"step {parked!r} is a retriable step: retry or skip it")
        if resolution.action != "retry" and resolution.step != parked:
            raise ValueError(
                f"{resolution.action} must name the parked step {parked!r}, not {resolution.step!r}"
            )

    # -- one action ----------------------------------------------------------------------------

    async def _run_action(
        self,
        step: Step,
        action: Http | Activity | Timer | ChildSaga,
        ctx: StepContext[Any],
        summary: str,
        *,
        compensation: bool,
    ) -> Any:
        saga, defaults = self.saga, self.saga.defaults
        activity_id = compensation_activity_id(step.name) if compensation else step.name
        if compensation:
            retry = step.compensation_retry or defaults.compensation_retry
            start_to_close: timedelta = defaults.compensation_start_to_close
            schedule_to_close: timedelta | None = None
        else:
            retry = saga.step_retry(step)
            start_to_close = step.start_to_close or defaults.start_to_close
            schedule_to_close = step.schedule_to_close or defaults.schedule_to_close
        state = self._state.steps[saga.steps.index(step)]

        if isinstance(action, Timer):
            duration = action.duration(ctx) if callable(action.duration) else action.duration
            await workflow.sleep(duration, summary=summary)
            return None
        if isinstance(action, ChildSaga):
            return await self._run_child(step, action, ctx, summary)
        local = step.local if step.local is not None else saga.local_activities
        timeouts = _Timeouts(start_to_close, schedule_to_close, defaults.heartbeat, retry)
        if isinstance(action, Http):
            path = action.path(ctx) if callable(action.path) else action.path
            body = _jsonable(action.body(ctx)) if action.body is not None else None
            if not compensation:
                self._inputs[step.name] = body
            request = HttpRequest(
                service=action.service, method=action.method, path=path, body=body
            )
            response = await self._call(
                HTTP_ACTIVITY, [request], HttpResponse, activity_id, summary, timeouts, local
            )
            if compensation:
                state.compensation_attempts = response.attempt
            else:
                state.attempts = response.attempt
            return response.body
        arg = _jsonable(action.arg(ctx)) if action.arg is not None else None
        if not compensation:
            self._inputs[step.name] = arg
        args: list[Any] = [] if action.arg is None else [arg]
        result_type = None if compensation else step.output
        timeouts = dataclasses.replace(timeouts, heartbeat=None)  # user activities may not beat
        return await self._call(
            action.activity, args, result_type, activity_id, summary, timeouts, local
        )

    @staticmethod
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

    # -- helpers -------------------------------------------------------------------------------

    @staticmethod
    async def _shielded(work: Awaitable[_T]) -> _T:
        """Run ``work`` to the end even if the saga is cancelled meanwhile (compensations)."""
        task = asyncio.ensure_future(work)
        while True:
            try:
                return await asyncio.shield(task)
            except asyncio.CancelledError:
                if task.done():
                    return task.result()

    def _set_status(self, status: SagaStatus, *, error: str | None = None) -> None:
        self._state.status = status
        if error is not None:
            self._state.error = error
        updates = [SAGA_STATUS.value_set(status)]
        if status is SagaStatus.COMPENSATED and self._state.failed_step:
            updates.append(SAGA_STEP.value_set(self._state.failed_step))  # where it failed
        self._upsert(*updates)
        if self._metrics is not None:
            self._metrics.ended(status)

    def _count_compensation(self, step: str, *, ok: bool) -> None:
        if self._metrics is not None:
            self._metrics.compensation(step, ok)

    def _report(self) -> SagaReport:
        return SagaReport(
            saga=self.saga.name,
            key=self._state.key,
            status=self._state.status,
            failed_step=self._state.failed_step,
            error=self._state.error,
            outputs=dict(self._outputs),
            compensations=list(self._compensations),
        )

    @staticmethod
    def _upsert(*updates: SearchAttributeUpdate[Any]) -> None:
        workflow.upsert_search_attributes(list(updates))


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
