"""A batch of a fan-out's items: the ``sagaloom.Items`` workflow a ``ForEach`` step starts.

It runs its item calls (or their undos) at most ``max_concurrency`` at a time, each an activity
with the step's timeouts and retries, and reports how each ended. It stops starting items once
more failed than the saga tolerates, and when asked to stop (the saga was cancelled, or its
deadline passed): the running items are cancelled and awaited, so the saga knows which may have
taken effect. It then completes with its results, never failing, so nothing is lost.
"""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import FailureError, is_cancelled_exception
from temporalio.workflow import ActivityCancellationType

from sagaloom._runtime._failures import attempt_of, describe, refused
from sagaloom._saga._fanout_rules import BatchResult, ItemBatch, ItemCall, ItemResult, ItemStatus
from sagaloom._saga._model import HttpResponse
from sagaloom._wire._names import ITEMS_STOP_SIGNAL, ITEMS_WORKFLOW

__all__ = ["MAX_BATCH_OUTPUT_BYTES", "ItemsWorkflow"]

MAX_BATCH_OUTPUT_BYTES = 1_000_000
"""Most bytes of item outputs (as JSON) one batch returns: half of Temporal's 2 MB limit."""


@workflow.defn(name=ITEMS_WORKFLOW)
class ItemsWorkflow:
    """Runs one batch of a fan-out's items (see the module)."""

    def __init__(self) -> None:
        self._stop = False
        self._results: dict[int, ItemResult] = {}
        self._running = 0
        self._most = 0
        self._output_bytes = 0
        self._failures = 0

    @workflow.signal(name=ITEMS_STOP_SIGNAL)
    def stop(self) -> None:
        """Start no more items; cancel the running ones; report."""
        self._stop = True

    @workflow.run
    async def run(self, batch: ItemBatch) -> BatchResult:
        """Run the batch's calls; return how each ended, in the order of the calls."""
        for call in batch.calls:
            self._results[call.index] = ItemResult(index=call.index, key=call.key)
        waiting = list(batch.calls)
        running: set[asyncio.Task[None]] = set()
        try:
            while waiting or running:
                while waiting and len(running) < batch.max_concurrency and not self._halted(batch):
                    call = waiting.pop(0)
                    running.add(asyncio.ensure_future(self._one(batch, call)))
                self._show(batch)
                if not running:
                    break
                await workflow.wait_condition(lambda: self._stop or any(t.done() for t in running))
                if self._stop:
                    await self._cancel(running)
                    break
                for task in [t for t in running if t.done()]:
                    running.discard(task)
                    task.result()
        except asyncio.CancelledError:  # the saga closed without asking: stop all the same
            await self._cancel(running)
        self._show(batch)
        return BatchResult(
            items=[self._results[c.index] for c in batch.calls], most_running=self._most
        )

    def _halted(self, batch: ItemBatch) -> bool:
        allowed = batch.allowed_failures
        return self._stop or (allowed is not None and self._failures > allowed)

    async def _cancel(self, running: set[asyncio.Task[None]]) -> None:
        for task in running:
            task.cancel()
        if running:
            await workflow.wait(list(running))

    async def _one(self, batch: ItemBatch, call: ItemCall) -> None:
        """Run one item's call and record how it ended."""
        result = self._results[call.index]
        self._running += 1
        self._most = max(self._most, self._running)
        try:
            output = await workflow.execute_activity(
                call.activity,
                args=call.args,
                result_type=HttpResponse if call.http else None,
                activity_id=f"{call.key}:compensate" if batch.undo else call.key,
                summary=call.summary,
                start_to_close_timeout=timedelta(seconds=batch.start_to_close_seconds),
                schedule_to_close_timeout=_seconds(batch.schedule_to_close_seconds),
                heartbeat_timeout=_seconds(batch.heartbeat_seconds) if call.http else None,
                retry_policy=_policy(batch),
                cancellation_type=ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
            )
        except FailureError as err:
            result.error, result.attempts = describe(err), attempt_of(err) or 0
            if batch.undo:
                result.status = ItemStatus.UNDO_FAILED
            elif is_cancelled_exception(err):
                result.status = ItemStatus.CANCELLED
            elif refused(err, batch.retry.non_retryable):
                result.status = ItemStatus.REFUSED
            else:
                result.status = ItemStatus.FAILED
        except asyncio.CancelledError:  # it may have been scheduled: it may have run
            result.status = ItemStatus.CANCELLED
        else:
            if call.http:
                assert isinstance(output, HttpResponse)
                result.output, result.attempts = output.body, output.attempt
            else:
                result.output = output
            result.status = ItemStatus.UNDONE if batch.undo else ItemStatus.DONE
            if not batch.undo and batch.output_budget is not None:
                self._keep_within_budget(result, batch.output_budget)
        finally:
            self._running -= 1
            self._failures += result.status in _FAILURES

    def _keep_within_budget(self, result: ItemResult, budget: int) -> None:
        """An output that would take the batch's result past its budget fails the item.

        Temporal refuses a result over 2 MB (the batch could never complete); the item took
        effect, so as a failure it is compensated like any other.
        """
        size = len(json.dumps(result.output, separators=(",", ":"), default=str))
        if self._output_bytes + size > budget:
            result.status, result.output = ItemStatus.FAILED, None
            result.error = (
                f"OutputTooLarge: the item's output ({size} bytes) takes its batch's outputs "
                f"past {budget} bytes: return less, lower batch_size, or turn the payload "
                "store on (SAGALOOM_PAYLOAD_STORE)"
            )
            return
        self._output_bytes += size

    def _show(self, batch: ItemBatch) -> None:
        """The batch's progress as the run's current details (the Web UI's run page)."""
        by: dict[ItemStatus, int] = {}
        for result in self._results.values():
            by[result.status] = by.get(result.status, 0) + 1
        what = "undo" if batch.undo else "items"
        first, last = batch.calls[0].index + 1, batch.calls[-1].index + 1
        parts = [f"{n} {s.value.replace('_', ' ')}" for s, n in sorted(by.items()) if n]
        workflow.set_current_details(
            f"**{batch.step}** {what} {first}-{last} of {batch.total} · {self._running} running"
            f" · {' · '.join(parts)}"
        )


_FAILURES = frozenset({ItemStatus.FAILED, ItemStatus.REFUSED, ItemStatus.UNDO_FAILED})


def _seconds(value: float | None) -> timedelta | None:
    return None if value is None else timedelta(seconds=value)


def _policy(batch: ItemBatch) -> RetryPolicy:
    spec = batch.retry
    return RetryPolicy(
        initial_interval=timedelta(seconds=spec.initial_seconds),
        backoff_coefficient=spec.backoff,
        maximum_interval=_seconds(spec.maximum_seconds),
        maximum_attempts=spec.maximum_attempts,
        non_retryable_error_types=spec.non_retryable or None,
    )
