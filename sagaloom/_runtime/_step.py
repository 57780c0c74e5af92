"""One step of a saga: its forward action, and its compensation, with every rule that applies.

Forward: skipped when patched out or its condition is false; its compensation registered before
it runs; its output validated; a refusal unregisters the compensation, any other failure leaves
it (the step may have taken effect); a retriable step out of budget parks for an operator.
Undo: run until done, or parked for an operator's decision, or recorded as failed.
"""

from __future__ import annotations

import asyncio
from typing import Any

from pydantic import BaseModel, ValidationError
from temporalio import workflow
from temporalio.exceptions import ApplicationError, FailureError, is_cancelled_exception

from sagaloom._runtime._actions import Dispatcher, jsonable
from sagaloom._runtime._children import Children
from sagaloom._runtime._concurrent import cancel_requested
from sagaloom._runtime._failures import (
    StepFailed,
    attempt_of,
    cancelled,
    describe,
    error_type,
    failure_kind,
    refused,
)
from sagaloom._runtime._fanout import FanOut
from sagaloom._runtime._parking import Parking
from sagaloom._runtime._progress import Progress
from sagaloom._runtime._replies import Replies, ReplyFailed
from sagaloom._saga._definition import (
    ChildSaga,
    Command,
    ForEach,
    StepContext,
    UndoContext,
    undoable,
)
from sagaloom._saga._holding import FailureKind, OnFailure, holds, new_key_on_redrive
from sagaloom._saga._model import StepStatus
from sagaloom._wire._names import SAGA_STEP, step_key

__all__ = ["StepRunner"]

_BUILDER_BUGS = (ArithmeticError, AttributeError, LookupError, TypeError, ValueError)
"""What a step's builder raises when it has a bug (a missing key, a wrong type, a bad value):
a step whose policy holds bugs holds on it; otherwise the workflow task fails and retries."""


class StepRunner:
    """Runs steps forward and back for one saga run."""

    def __init__(
        self,
        progress: Progress,
        actions: Dispatcher,
        parking: Parking,
        replies: Replies,
        children: Children,
        fanout: FanOut,
    ) -> None:
        self._progress = progress
        self._fanout = fanout
        self._actions = actions
        self._parking = parking
        self._replies = replies
        self._children = children
        self.saga = progress.saga
        self.input: BaseModel | None = None
        """The saga's input as an operator corrected it with a redrive (None: as started)."""

    async def forward(
        self, name: str, data: BaseModel, *, patch: dict[str, Any] | None = None
    ) -> None:
        """Run step ``name``: skip it, or run it and record its output or why it failed.

        A failure that the step's ``on_failure`` policy holds waits for an operator here: a
        redrive runs the step again (``patch``: its request patched), ``mark_done`` records it
        done, ``compensate`` fails it as without a hold.
        """
        saga, progress = self.saga, self._progress
        data = self.input or data  # an operator's redrive may have corrected the input
        index = saga.position[name]
        step, state = saga.steps[index], progress.step(name)
        if step.patch is not None and not workflow.patched(step.patch):
            state.status = StepStatus.SKIPPED  # added after this run started: it replays as it ran
            return
        ctx = StepContext(saga_id=workflow.info().workflow_id, input=data, outputs=progress.outputs)
        if step.when is not None and not step.when(ctx):
            state.status = StepStatus.SKIPPED  # its condition is false: never run, never undone
            return
        if undoable(step):
            progress.register(name)  # registered before the step runs
        state.status, state.started_at = StepStatus.RUNNING, workflow.now()
        progress.publish()
        if saga.track_steps:
            progress.upsert(SAGA_STEP.value_set(step.name))
        summary = f"step {index + 1}/{len(saga.steps)} {step.name}"
        # an HTTP participant that answers later (a Command waits for its reply itself)
        asynchronous = step.reply_timeout is not None and not isinstance(step.action, Command)
        policy = saga.step_policy(step)
        try:
            correlation = step_key(ctx.saga_id, progress.key_name(step.name))
            if asynchronous:
                self._replies.expect(correlation)  # a reply may arrive before the command returns
            output: Any
            if isinstance(step.action, ForEach):  # item by item; each item's output checked
                output = await self._fanout.run(step, ctx)
            else:
                output = jsonable(
                    await self._actions.run(
                        name, step.action, ctx, summary, undo=False, patch=patch
                    )
                )
            if asynchronous and step.reply_timeout is not None:
                output = (
                    await self._replies.wait(correlation, step.reply_timeout, step.name) or output
                )
            if step.output is not None and not isinstance(step.action, ForEach):
                # an empty answer does not fit a declared output either
                output = step.output.model_validate(output).model_dump(mode="json")
        except ValidationError as err:
            # It answered 2xx, so it took effect: its compensation stays registered.
            first = err.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "<output>"
            assert step.output is not None
            reason = f"MalformedOutput: {step.output.__name__}.{where}: {first['msg']}"
            progress.step_ended(name, StepStatus.FAILED, reason)
            if await self._held(name, data, reason, "unknown", policy):
                return
            progress.step_failed(name, "MalformedOutput")
            raise StepFailed(step.name, ApplicationError(reason)) from None
        except ReplyFailed as err:
            progress.step_ended(name, StepStatus.FAILED, str(err))
            kind: FailureKind = "timeout" if err.timed_out else "refused"
            if await self._held(name, data, str(err), kind, policy):
                return
            progress.step_failed(name, "ReplyFailed")
            self._log_failure(step.name, "failed", str(err))
            raise StepFailed(step.name, ApplicationError(str(err))) from None
        except FailureError as err:  # ActivityError; a local activity's ApplicationError
            task = asyncio.current_task()
            if cancelled(err, task_cancelled=task is not None and task.cancelling() > 0):
                progress.step_ended(name, StepStatus.FAILED, "cancelled")
                if is_cancelled_exception(err):
                    raise
                raise asyncio.CancelledError from None  # cancelled between two attempts
            state.attempts = attempt_of(err) or state.attempts
            progress.step_ended(name, StepStatus.FAILED, describe(err))
            if step.kind == "retriable":  # past the pivot: never undone, so wait for an operator
                decision = await self._parking.park(name, describe(err), forward=True)
                if decision.action == "retry":
                    return await self.forward(name, data)
                state.status = StepStatus.SKIPPED
                return
            listed = saga.step_retry(step).non_retryable_error_types or ()
            if refused(err, list(listed)):
                # The participant refused: nothing took effect, so nothing to undo. Any other
                # failure (timeout, retries exhausted) leaves the outcome unknown: undo it.
                progress.refused(name)
            kind = failure_kind(err, list(listed))
            if await self._held(name, data, state.error or describe(err), kind, policy):
                return
            self._log_failure(step.name, "failed for good", state.error or "")
            progress.step_failed(name, error_type(err))
            raise StepFailed(step.name, err) from None
        except _BUILDER_BUGS as err:  # a step builder raised (not a classified failure)
            if not holds(policy, "bug"):
                raise  # as always: the workflow task fails and retries until the code is fixed
            reason = f"bug in step {step.name}: {type(err).__name__}: {err}"
            progress.step_ended(name, StepStatus.FAILED, reason)
            if await self._held(name, data, reason, "bug", policy):
                return
            progress.step_failed(name, type(err).__name__)  # the operator chose to compensate
            raise StepFailed(step.name, ApplicationError(reason, type="StepBug")) from None
        except GeneratorExit:
            raise  # evicted from the worker's cache: no workflow call may run now
        except BaseException:  # cancelled during a timer (asyncio.CancelledError)
            progress.step_ended(name, StepStatus.FAILED, "cancelled")
            raise
        progress.record_output(name, output)
        progress.step_ended(name, StepStatus.DONE)
        task = asyncio.current_task()
        stopped = (task is not None and task.cancelling() > 0) or cancel_requested()
        if stopped:
            # The saga was cancelled while this action ran, and it finished anyway: it took
            # effect, so it stays done and registered for undo, and the saga now stops and
            # compensates (the SDK returns an activity's result when it completes after a
            # cancel request, without raising the cancellation again).
            raise asyncio.CancelledError

    async def _held(
        self, name: str, data: BaseModel, error: str, kind: FailureKind, policy: OnFailure
    ) -> bool:
        """Hold step ``name`` for an operator when ``policy`` holds a failure of ``kind``.

        Returns:
            True when the operator redrove the step (it ran again) or marked it done; False
            when the step is not held, or the operator chose to compensate.
        """
        if not holds(policy, kind):
            return False
        progress = self._progress
        decision = await self._parking.hold(name, f"{error} ({kind})")
        if decision.action == "mark_done":
            step = self.saga.steps[self.saga.position[name]]
            output = jsonable(decision.output)
            if step.output is not None:
                output = step.output.model_validate(output).model_dump(mode="json")
            if undoable(step):
                progress.register(name)  # it took effect, by hand: undone if the saga fails
            progress.record_output(name, output)
            progress.step_ended(name, StepStatus.DONE)
            return True
        if decision.action == "compensate":
            return False
        if new_key_on_redrive(kind, changed=decision.request_patch is not None):
            progress.next_generation(name)  # refused under its key: a new key this time
        new_input = self._parking.decided_input(decision)
        if new_input is not None:
            self.input = new_input
        await self.forward(name, data, patch=decision.request_patch)
        return True

    def _log_failure(self, step: str, how: str, error: str) -> None:
        workflow.logger.warning(
            "saga %s %s: step %s %s: %s",
            self.saga.name,
            workflow.info().workflow_id,
            step,
            how,
            error,
        )

    async def undo(self, name: str, data: BaseModel) -> None:
        """Run one step's compensation until it is done, parked and resolved, or recorded."""
        saga, progress = self.saga, self._progress
        data = self.input or data
        index = saga.position[name]
        step, state = saga.steps[index], progress.step(name)
        if isinstance(step.action, ChildSaga):
            state.status = StepStatus.COMPENSATING
            await self._children.undo(step.name)
            progress.compensation_ended(name, StepStatus.COMPENSATED, ok=True)
            return
        ctx = UndoContext(
            saga_id=workflow.info().workflow_id,
            input=data,
            outputs=progress.outputs,
            step_input=progress.inputs.get(name),
            step_output=progress.outputs.get(step.name),
        )
        summary = f"compensate {index + 1}/{len(saga.steps)} {step.name}"
        while True:
            state.status = StepStatus.COMPENSATING
            progress.publish()
            if saga.track_steps:
                progress.upsert(SAGA_STEP.value_set(step.name))
            try:
                if isinstance(step.action, ForEach):  # the items that may have taken effect
                    await self._fanout.undo(step, ctx)
                elif progress.unrecorded(name) and name not in progress.outputs:
                    assert step.compensation is not None
                    try:  # its builder may need the output of a run history does not show
                        await self._actions.run(name, step.compensation, ctx, summary, undo=True)
                    except (ValueError, KeyError, TypeError, AttributeError) as err:
                        progress.compensation_ended(
                            name,
                            StepStatus.COMPENSATION_SKIPPED,
                            ok=True,
                            resolution=f"not recorded as run; its undo cannot be built: {err}",
                        )
                        return
                else:
                    assert step.compensation is not None
                    await self._actions.run(name, step.compensation, ctx, summary, undo=True)
            except FailureError as err:
                if is_cancelled_exception(err):
                    raise
                progress.count_compensation(step.name, ok=False)
                if saga.continue_on_compensation_error:
                    state.compensation_error = describe(err)
                    progress.compensation_ended(
                        name, StepStatus.COMPENSATION_FAILED, ok=False, error=describe(err)
                    )
                    return
                decision = await self._parking.park(name, describe(err))
                if decision.action == "retry":
                    continue
                done = decision.action == "mark_compensated"
                progress.compensation_ended(
                    name,
                    StepStatus.COMPENSATED if done else StepStatus.COMPENSATION_SKIPPED,
                    ok=done,
                    error=decision.error,
                    resolution=f"{decision.action}: {decision.note}".rstrip(": "),
                )
                return
            progress.compensation_ended(name, StepStatus.COMPENSATED, ok=True)
            progress.count_compensation(step.name, ok=True)
            return
