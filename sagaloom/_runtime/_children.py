"""Nested sagas: a child saga run as one step, held open until its parent decides."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ChildWorkflowError
from temporalio.workflow import ChildWorkflowHandle

from sagaloom._definition import ChildSaga
from sagaloom._model import ChildDone
from sagaloom._names import (
    CHILD_CANCEL_PATCH,
    CHILD_DONE_SIGNAL,
    HELD_MEMO,
    OLD_CHILD_DONE_SIGNAL,
    OLD_PARENT_SIGNAL,
    PARENT_SIGNAL,
    SIGNAL_NAMES_PATCH,
)

__all__ = ["Children"]


class Children:
    """As a parent: the child sagas started and which are done. As a child: the parent's word."""

    def __init__(self) -> None:
        self._handles: dict[str, ChildWorkflowHandle[Any, Any]] = {}
        self._done: dict[str, ChildDone] = {}
        self._from_parent: str | None = None

    async def run(self, step: str, child: ChildSaga, arg: Any, summary: str) -> dict[str, Any]:
        """Start the child saga and wait until its steps are done (it then waits, held open).

        Raises:
            ChildWorkflowError: the child failed (it compensated itself).
        """
        child_id = f"{workflow.info().workflow_id}:{step}"
        handle = await workflow.start_child_workflow(
            child.saga.name,
            arg,
            id=child_id,
            task_queue=workflow.info().task_queue,
            memo={HELD_MEMO: True},
            static_summary=summary,
        )
        self._handles[step] = handle
        await workflow.wait_condition(lambda: child_id in self._done or handle.done())
        if child_id in self._done:
            return self._done[child_id].outputs
        await handle  # it failed: compensated itself (ChildWorkflowError)
        return {}

    async def undo(self, step: str) -> None:
        """Have a child saga compensate itself as a unit, and wait until it has."""
        handle = self._handles.get(step)
        if handle is None or handle.done():
            return
        if handle.id in self._done:
            await handle.signal(_name(PARENT_SIGNAL, OLD_PARENT_SIGNAL), "compensate")
        elif workflow.patched(CHILD_CANCEL_PATCH):
            # Still running its steps: ask the child itself to cancel (it compensates them),
            # then wait for it to end. (Cancelling the handle's future instead gave up waiting
            # at once, and the parent could end, terminating the child mid-compensation.)
            await workflow.get_external_workflow_handle(handle.id).cancel()
        else:
            handle.cancel()  # as sagas started before the patch ran
        with contextlib.suppress(ChildWorkflowError, asyncio.CancelledError):
            await handle

    async def release(self) -> None:
        """The parent completed: let every held child saga complete too."""
        held = [h for h in self._handles.values() if h.id in self._done and not h.done()]
        for handle in held:
            await handle.signal(_name(PARENT_SIGNAL, OLD_PARENT_SIGNAL), "release")
        for handle in held:
            await handle

    def child_done(self, done: ChildDone) -> None:
        """A child saga's steps are done; it waits for this saga's decision."""
        self._done[done.workflow_id] = done

    def parent_says(self, decision: str) -> None:
        """The parent saga's decision for this held child: ``release`` or ``compensate``."""
        self._from_parent = decision

    async def parent_decision(self, outputs: dict[str, Any]) -> str | None:
        """As a held child saga: report done to the parent, then wait for its decision.

        Returns:
            ``release`` or ``compensate``; None when this saga is not held by a parent.
        """
        parent = workflow.info().parent
        if parent is None or not workflow.memo_value(HELD_MEMO, False, type_hint=bool):
            return None
        done = ChildDone(workflow_id=workflow.info().workflow_id, outputs=outputs)
        await workflow.get_external_workflow_handle(parent.workflow_id).signal(
            _name(CHILD_DONE_SIGNAL, OLD_CHILD_DONE_SIGNAL), done
        )
        await workflow.wait_condition(lambda: self._from_parent is not None)
        return self._from_parent


def _name(readable: str, old: str) -> str:
    """The signal name to send: the readable one, or the old one in sagas started before it."""
    return readable if workflow.patched(SIGNAL_NAMES_PATCH) else old
