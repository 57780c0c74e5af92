"""A ``ForEach`` step in its saga: building its items' calls, running their batches, undoing.

The saga builds each item's call with the user's builders (deterministic, in the workflow), and
runs the items batch by batch, each batch a ``sagaloom.Items`` child workflow, one batch at a
time (so at most ``max_concurrency`` items run at once). It keeps how each item ended — in
memory, and in each batch's result in history — and from that alone decides which items to
undo (:func:`sagaloom._saga._fanout_rules.to_undo`). Its own history grows by a handful of
events a batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError
from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError, ChildWorkflowError, FailureError
from temporalio.workflow import ParentClosePolicy

from sagaloom._runtime._actions import jsonable
from sagaloom._runtime._concurrent import cancel_requested, shielded
from sagaloom._runtime._failures import describe
from sagaloom._runtime._items import MAX_BATCH_OUTPUT_BYTES
from sagaloom._runtime._payloads import payloads_stored
from sagaloom._runtime._progress import Progress
from sagaloom._saga._definition import Activity, ForEach, Http, ItemAction, ItemContext, Step
from sagaloom._saga._definition import SagaInputError as _SagaInputError
from sagaloom._saga._fanout_rules import (
    BatchResult,
    ItemBatch,
    ItemCall,
    ItemResult,
    ItemStatus,
    RetrySpec,
    batches,
    counts,
    to_undo,
)
from sagaloom._saga._model import SAGA_INPUT_ERROR, HttpRequest
from sagaloom._wire._names import (
    HTTP_ACTIVITY,
    ITEMS_STOP_SIGNAL,
    ITEMS_WORKFLOW,
    items_batch_id,
)

__all__ = ["MAX_OUTPUTS_BYTES", "FanOut"]

MAX_OUTPUTS_BYTES = 1_000_000
"""Most bytes (as JSON) of a fan-out step's output, the list of its items' outputs."""


@dataclass
class _Run:
    """One fan-out step's items, as far as the saga knows."""

    items: list[Any]
    keys: list[str]
    results: dict[int, ItemResult] = field(default_factory=dict)
    inputs: dict[int, Any] = field(default_factory=dict)
    """What each item's call was built with (its compensation's ``step_input``)."""
    undone: set[int] = field(default_factory=set)


class FanOut:
    """Runs the saga's ``ForEach`` steps forward and back."""

    def __init__(self, progress: Progress) -> None:
        self._progress = progress
        self._runs: dict[str, _Run] = {}

    async def run(self, step: Step, ctx: Any) -> list[Any]:
        """Run every item of ``step``; return their outputs in input order.

        Raises:
            ApplicationError: the items are invalid (``SagaInputError``: nothing ran), or more
                failed than the step tolerates (``ItemsFailed``, naming them); the items that
                may have taken effect stay registered for the step's compensation.
        """
        each = step.action
        assert isinstance(each, ForEach)
        saga = self._progress.saga
        try:
            items = list(each.items(ctx))
            keys = each.item_keys(saga.name, items)
        except _SagaInputError as err:
            raise ApplicationError(str(err), type=SAGA_INPUT_ERROR, non_retryable=True) from None
        run = self._runs[step.name] = _Run(items=items, keys=keys)
        allowed = each.allowed_failures(len(items))
        self._counts(step.name, running=0)
        for number, indexes in enumerate(batches(len(items), each.batch_size)):
            calls = []
            for index in indexes:
                item_ctx = self._context(ctx, run, index, undo=False)
                call, built = self._call(step, each.do, item_ctx, undo=False)
                run.inputs[index] = built
                calls.append(call)
            failures = self._failures(run)
            batch = self._batch(step, calls, undo=False, allowed=allowed - failures)
            await self._run_batch(step.name, number, batch)
            if self._failures(run) > allowed:
                break
        self._check_outputs(step, run)
        failed = [r for r in run.results.values() if r.status in _FAILED]
        if len(failed) > allowed:
            names = ", ".join(f"{r.key}: {r.error}" for r in failed[:5])
            more = f" (and {len(failed) - 5} more)" if len(failed) > 5 else ""
            raise ApplicationError(
                f"{len(failed)} of {len(items)} items failed (tolerated: {allowed}): {names}{more}",
                type="ItemsFailed",
            )
        if failed and each.compensation is not None:  # tolerated: undo those that may have run
            maybe = [r.index for r in failed if r.status is ItemStatus.FAILED]
            if maybe:
                await self.undo(step, ctx, only=maybe)
        outputs = [
            run.results[i].output if run.results[i].status is ItemStatus.DONE else None
            for i in range(len(items))
        ]
        if payloads_stored():  # a large report is stored, history holds a reference
            return outputs
        size = len(json.dumps(outputs, separators=(",", ":"), default=str))
        if size > MAX_OUTPUTS_BYTES:  # the saga's report would pass Temporal's 2 MB limit
            raise ApplicationError(
                f"the items' outputs take {size} bytes; a fan-out's output is at most "
                f"{MAX_OUTPUTS_BYTES} bytes without a payload store (the saga's report carries "
                "it): return less, or turn the store on (SAGALOOM_PAYLOAD_STORE)",
                type="OutputTooLarge",
            )
        return outputs

    async def undo(self, step: Step, ctx: Any, *, only: list[int] | None = None) -> None:
        """Compensate the items that took or may have taken effect and are not undone yet.

        Raises:
            ApplicationError: ``ItemsNotUndone``: some items' compensation failed for good
                (named); the saga parks on the step, and a retry undoes only those.
        """
        each = step.action
        assert isinstance(each, ForEach) and each.compensation is not None
        run = self._runs.get(step.name)
        if run is None:  # registered, never begun (cancelled first): nothing ran
            return
        todo = to_undo(run.results.values(), run.undone)
        if only is not None:
            todo = [i for i in todo if i in only]
        for number, indexes in reversed(list(enumerate(batches(len(run.items), each.batch_size)))):
            mine = [i for i in todo if i in indexes]
            if not mine:
                continue
            calls = [
                self._call(
                    step, each.compensation, self._context(ctx, run, i, undo=True), undo=True
                )[0]
                for i in mine
            ]
            batch = self._batch(step, calls, undo=True, allowed=None)
            result = await self._run_batch(step.name, number, batch, undo=True)
            run.undone |= {r.index for r in result.items if r.status is ItemStatus.UNDONE}
            self._counts(step.name, running=0)
        left = [run.results[i] for i in todo if i not in run.undone]
        if left:
            names = ", ".join(run.keys[r.index] for r in left[:5])
            raise ApplicationError(
                f"{len(left)} item(s) not undone: {names}"
                + (f" (and {len(left) - 5} more)" if len(left) > 5 else ""),
                type="ItemsNotUndone",
            )

    # -- the parts -----------------------------------------------------------------------------

    def _context(self, ctx: Any, run: _Run, index: int, *, undo: bool) -> ItemContext[Any]:
        result = run.results.get(index)
        return ItemContext(
            saga_id=ctx.saga_id,
            input=ctx.input,
            outputs=ctx.outputs,
            step_input=run.inputs.get(index) if undo else None,
            step_output=result.output if undo and result is not None else None,
            item=run.items[index],
            index=index,
            item_key=run.keys[index],
        )

    def _call(
        self, step: Step, action: ItemAction, ctx: ItemContext[Any], *, undo: bool
    ) -> tuple[ItemCall, Any]:
        """One item's call, and what it was built with."""
        total = len(self._runs[step.name].items)
        what = "undo " if undo else ""
        summary = f"{what}{step.name} [{ctx.item_key}] {ctx.index + 1}/{total}"
        if isinstance(action, Http):
            path = action.path(ctx) if callable(action.path) else action.path
            body = jsonable(action.body(ctx)) if action.body is not None else None
            request = HttpRequest(
                service=action.service, method=action.method, path=path, body=body
            )
            call = ItemCall(
                index=ctx.index,
                key=ctx.item_key,
                activity=HTTP_ACTIVITY,
                args=[request],
                http=True,
                summary=summary,
            )
            return call, body
        assert isinstance(action, Activity)
        arg = jsonable(action.arg(ctx)) if action.arg is not None else None
        name = action.activity if isinstance(action.activity, str) else _activity_name(action)
        call = ItemCall(
            index=ctx.index,
            key=ctx.item_key,
            activity=name,
            args=[] if action.arg is None else [arg],
            summary=summary,
        )
        return call, arg

    def _batch(
        self, step: Step, calls: list[ItemCall], *, undo: bool, allowed: int | None
    ) -> ItemBatch:
        saga, defaults = self._progress.saga, self._progress.saga.defaults
        each = step.action
        assert isinstance(each, ForEach)
        if undo:
            policy = step.compensation_retry or defaults.compensation_retry
            start_to_close = defaults.compensation_start_to_close
            budget: Any = defaults.compensation_budget
        else:
            policy = saga.step_retry(step)
            start_to_close = step.start_to_close or defaults.start_to_close
            budget = step.schedule_to_close or defaults.schedule_to_close
        return ItemBatch(
            saga_id=workflow.info().workflow_id,
            step=step.name,
            undo=undo,
            calls=calls,
            max_concurrency=each.max_concurrency,
            allowed_failures=allowed,
            start_to_close_seconds=start_to_close.total_seconds(),
            schedule_to_close_seconds=budget.total_seconds() if budget else None,
            heartbeat_seconds=defaults.heartbeat.total_seconds(),
            retry=_spec(policy),
            total=len(self._runs[step.name].items),
            output_budget=None if payloads_stored() else MAX_BATCH_OUTPUT_BYTES,
        )

    async def _run_batch(
        self, step: str, number: int, batch: ItemBatch, *, undo: bool = False
    ) -> BatchResult:
        """Run one batch to its end and take its results; a cancel stops it first.

        The batch is started and awaited where cancellation cannot reach; when the saga is
        cancelled meanwhile (or its deadline cancels the step), the batch is told to stop —
        it cancels its running items and reports — and only then is the cancel raised, so
        every item that may have taken effect is known.
        """
        run = self._runs[step]
        first, last = batch.calls[0].index + 1, batch.calls[-1].index + 1
        what = "undo" if undo else "items"
        handle = await shielded(
            workflow.start_child_workflow(
                ITEMS_WORKFLOW,
                batch,
                id=items_batch_id(workflow.info().workflow_id, step, number),
                task_queue=workflow.info().task_queue,
                result_type=BatchResult,
                static_summary=f"{step}: {what} {first}-{last} of {batch.total}",
                parent_close_policy=ParentClosePolicy.REQUEST_CANCEL,
                retry_policy=RetryPolicy(maximum_attempts=1),
            )
        )
        self._counts(step, running=len(batch.calls))
        if undo:  # compensating: shielded by its caller, it runs to the end
            try:
                result: BatchResult = await handle
            except ChildWorkflowError as err:  # terminated by hand: none known undone
                raise _lost(batch, err, "ItemsNotUndone") from None
            self._counts(step, running=0)
            return result
        stopped = cancel_requested()
        try:
            if not stopped:
                await workflow.wait_condition(lambda: handle.done() or cancel_requested())
                stopped = not handle.done()
        except asyncio.CancelledError:
            stopped = True
        if stopped:
            with contextlib.suppress(FailureError, asyncio.CancelledError):
                await shielded(handle.signal(ITEMS_STOP_SIGNAL))
        try:
            result = await shielded(handle)
        except ChildWorkflowError as err:  # terminated by hand: any of its items may have run
            for call in batch.calls:
                run.results[call.index] = ItemResult(
                    index=call.index, key=call.key, status=ItemStatus.CANCELLED,
                    error="its batch ended without reporting",
                )  # fmt: skip
            self._counts(step, running=0)
            raise _lost(batch, err, "ItemsBatchLost") from None
        for item in result.items:
            run.results[item.index] = item
        self._counts(step, running=0)
        if stopped:
            raise asyncio.CancelledError
        return result

    def _check_outputs(self, step: Step, run: _Run) -> None:
        """An item whose output does not fit ``step.output`` failed (it took effect)."""
        if step.output is None:
            return
        for result in run.results.values():
            if result.status is not ItemStatus.DONE:
                continue
            try:
                result.output = step.output.model_validate(result.output).model_dump(mode="json")
            except ValidationError as err:
                first = err.errors()[0]
                where = ".".join(str(p) for p in first["loc"]) or "<output>"
                result.status = ItemStatus.FAILED
                result.error = f"MalformedOutput: {step.output.__name__}.{where}: {first['msg']}"
        self._counts(step.name, running=0)

    @staticmethod
    def _failures(run: _Run) -> int:
        return sum(r.status in _FAILED for r in run.results.values())

    def _counts(self, step: str, *, running: int) -> None:
        run = self._runs[step]
        state = self._progress.step(step)
        state.items = counts(list(run.results.values()), len(run.items), len(run.undone))
        state.items.running = running
        self._progress.publish()


_FAILED = (ItemStatus.FAILED, ItemStatus.REFUSED)


def _lost(batch: ItemBatch, err: ChildWorkflowError, kind: str) -> ApplicationError:
    """The failure of a step whose batch ended without its result (terminated by hand).

    Never a refusal: every item the batch held counts as possibly done, and is undone.
    """
    first, last = batch.calls[0].index + 1, batch.calls[-1].index + 1
    return ApplicationError(
        f"the batch of items {first}-{last} ended without reporting ({describe(err)}): "
        "each of its items may have taken effect",
        type=kind,
    )


def _spec(policy: RetryPolicy) -> RetrySpec:
    return RetrySpec(
        initial_seconds=policy.initial_interval.total_seconds(),
        backoff=policy.backoff_coefficient,
        maximum_seconds=policy.maximum_interval.total_seconds()
        if policy.maximum_interval
        else None,
        maximum_attempts=policy.maximum_attempts,
        non_retryable=list(policy.non_retryable_error_types or ()),
    )


def _activity_name(action: Activity) -> str:
    """The registered name of an ``@activity.defn`` function."""
    definition = getattr(action.activity, "__temporal_activity_definition", None)
    name = getattr(definition, "name", None)
    if not isinstance(name, str):
        raise TypeError(f"{action.activity!r} is not an @activity.defn function")
    return name
