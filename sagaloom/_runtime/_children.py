"""Nested sagas: a child saga run as one step, held open until its parent decides."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ChildWorkflowError, FailureError
from temporalio.workflow import ChildWorkflowHandle, ParentClosePolicy

from sagaloom._runtime._concurrent import cancel_requested
from sagaloom._runtime._nesting import HeldChoice, child_undo, held_child_choice
from sagaloom._runtime._payloads import payloads_stored
from sagaloom._saga._definition import ChildSaga
from sagaloom._saga._model import ChildDone
from sagaloom._wire._names import (
    CHILD_DONE_SIGNAL,
    HELD_MEMO,
    PARENT_SIGNAL,
    PAYLOADS_MEMO,
    step_key,
)

__all__ = ["Children"]


class Children:
    """As a parent: the child sagas started and which are done. As a child: the parent's word."""

    def __init__(self) -> None:
        self._handles: dict[str, ChildWorkflowHandle[Any, Any]] = {}
        self._starting: dict[str, str] = {}
        """Child workflow ids by step, from the moment their start is asked for."""
        self._done: dict[str, ChildDone] = {}
        self._from_parent: HeldChoice | None = None

    async def run(self, step: str, child: ChildSaga, arg: Any, summary: str) -> dict[str, Any]:
        """Start the child saga and wait until its steps are done (it then waits, held open).

        Raises:
            ChildWorkflowError: the child failed (it compensated itself).
        """
        child_id = step_key(workflow.info().workflow_id, step)
        self._starting[step] = child_id
        handle = await workflow.start_child_workflow(
            child.saga.name,
            arg,
            id=child_id,
            task_queue=workflow.info().task_queue,
            memo={HELD_MEMO: True, **({PAYLOADS_MEMO: True} if payloads_stored() else {})},
            static_summary=summary,
            # Should this saga close while the child runs (cancelled as the child was starting,
            # so it never got its handle), the server asks the child to cancel — it then
            # compensates itself — instead of terminating it half-way (the default).
            parent_close_policy=ParentClosePolicy.REQUEST_CANCEL,
        )
        self._handles[step] = handle
        # A cancel the SDK swallowed while the child started is noticed here, not only once
        # the child's steps are done.
        await workflow.wait_condition(
            lambda: child_id in self._done or handle.done() or cancel_requested()
        )
        if cancel_requested() and not handle.done():
            raise asyncio.CancelledError  # the undo asks the child to cancel (or compensate)
        if child_id in self._done:
            return self._done[child_id].outputs
        await handle  # it failed: compensated itself (ChildWorkflowError)
        return {}

    async def undo(self, step: str) -> None:
        """Have a child saga compensate itself as a unit, and wait until it has."""
        handle = self._handles.get(step)
        if handle is None and step in self._starting:
            # Cancelled while the child was starting: it may have started without this saga
            # hearing of it. Ask it to cancel (it compensates itself); absent, nothing to undo.
            with contextlib.suppress(Exception):
                await workflow.get_external_workflow_handle(self._starting[step]).cancel()
            return
        how = child_undo(
            start_asked=step in self._starting or handle is not None,
            started=handle is not None,
            reported_done=handle is not None and handle.id in self._done,
            ended=handle is None or handle.done(),
        )
        if how == "nothing" or handle is None:
            return
        if how == "compensate":
            # (it may have ended meanwhile, cancelled while held: then there is nothing to tell)
            with contextlib.suppress(FailureError):
                await handle.signal(PARENT_SIGNAL, "compensate")
        else:
            # Still running its steps, or held without this saga having heard so yet: ask the
            # child itself to cancel (it compensates them), then wait for it to end. (Cancelling
            # the handle's future instead gave up waiting at once, and the parent could end,
            # terminating the child mid-compensation.)
            await workflow.get_external_workflow_handle(handle.id).cancel()
        with contextlib.suppress(ChildWorkflowError, asyncio.CancelledError):
            await handle

    async def release(self) -> list[tuple[str, ChildWorkflowError]]:
        """The parent completed: let every held child saga complete too.

        Returns:
            The children that reported their steps done yet did not complete (an operator
            cancelled one while it was held), by step, with why: their steps are undone, so the
            parent must undo its own.
        """
        reported = [(s, h) for s, h in self._handles.items() if h.id in self._done]
        for _, handle in reported:
            if not handle.done():
                with contextlib.suppress(FailureError):  # it ended meanwhile: read below
                    await handle.signal(PARENT_SIGNAL, "release")
        failed: list[tuple[str, ChildWorkflowError]] = []
        for step, handle in reported:
            try:
                await handle
            except ChildWorkflowError as err:
                failed.append((step, err))
        return failed

    def holds_any(self) -> bool:
        """Whether some child saga reported its steps done (it waits for this saga's word)."""
        return any(h.id in self._done for h in self._handles.values())

    def child_done(self, done: ChildDone) -> None:
        """A child saga's steps are done; it waits for this saga's decision."""
        self._done[done.workflow_id] = done

    def parent_says(self, decision: str) -> None:
        """The parent saga's decision for this held child: ``release`` or ``compensate``."""
        if decision in ("release", "compensate"):
            self._from_parent = "release" if decision == "release" else "compensate"

    async def parent_decision(self, outputs: dict[str, Any]) -> HeldChoice | None:
        """As a held child saga: report done to the parent, then wait for its decision.

        Returns:
            ``release`` or ``compensate``; None when this saga is not held by a parent.

        Raises:
            asyncio.CancelledError: this held saga was asked to cancel before any decision came,
                even if the SDK swallowed the request while the signal above was in flight (the
                parent then undoes it by cancelling, and waits for it to end).
        """
        parent = workflow.info().parent
        if parent is None or not workflow.memo_value(HELD_MEMO, False, type_hint=bool):
            return None
        done = ChildDone(workflow_id=workflow.info().workflow_id, outputs=outputs)
        try:
            await workflow.get_external_workflow_handle(parent.workflow_id).signal(
                CHILD_DONE_SIGNAL, done
            )
        except FailureError:  # (the server could not deliver it: no such running workflow)
            # The parent closed first (cancelled while this child started): no decision will
            # ever come, and a saga it no longer accounts for must not stay half-done.
            workflow.logger.warning(
                "saga %s: its parent %s is gone: compensating", done.workflow_id, parent.workflow_id
            )
            return "compensate"
        await workflow.wait_condition(
            lambda: held_child_choice(self._from_parent, cancel_requested()) is not None
        )
        if self._from_parent is None:
            raise asyncio.CancelledError  # asked to cancel, and nobody will decide: undo it all
        return self._from_parent
