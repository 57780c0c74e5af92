"""Concurrency in a saga: one loop running steps (or undos) as the graph allows; shielding."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from temporalio import workflow

__all__ = ["cancel_requested", "run_as_ready", "shielded"]

_T = TypeVar("_T")


async def run_as_ready(
    items: Sequence[_T],
    ready: Callable[[list[_T], set[_T]], list[_T]],
    run: Callable[[_T], Awaitable[None]],
    rank: Callable[[_T], int],
) -> None:
    """Run each of ``items`` once ``ready`` allows it, concurrently, until all have finished.

    Args:
        items: Step names, in the order readiness is checked.
        ready: Given the items still waiting (in order) and those finished, the ones to start.
        run: Runs one item; an exception fails the whole loop.
        rank: An item's place in the saga (its step's position).

    Finished tasks are taken in step order (by ``rank``), so the first failure is chosen
    deterministically. When one fails (or the loop is cancelled), the others still running are
    cancelled and awaited before the failure propagates.
    """
    waiting, finished = list(items), set[_T]()
    running: dict[asyncio.Future[None], _T] = {}
    try:
        while waiting or running:
            for item in ready(waiting, finished):
                waiting.remove(item)
                running[asyncio.ensure_future(run(item))] = item
            done, _ = await workflow.wait(list(running), return_when=asyncio.FIRST_COMPLETED)
            for task in sorted(done, key=lambda t: rank(running[t])):
                item = running.pop(task)
                task.result()  # a failure raises here
                finished.add(item)
    except GeneratorExit:
        raise  # evicted from the worker's cache: no workflow call may run now
    except BaseException:
        for task in running:
            task.cancel()
        if running:
            await workflow.wait(list(running))
        raise


def cancel_requested() -> bool:
    """Whether this saga was asked to cancel, even if the SDK swallowed the cancellation.

    A cancel arriving in the workflow task that also resolves a Temporal operation (an
    activity's result, a child's start, a signal to another workflow) is not raised: the
    operation's result is returned, and the task's cancel count is cleared.
    """
    return workflow.cancellation_reason() is not None


async def shielded(work: Awaitable[_T]) -> _T:
    """Run ``work`` to the end even if the saga is cancelled meanwhile (compensations)."""
    task = asyncio.ensure_future(work)
    while True:
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            if task.done():
                return task.result()
