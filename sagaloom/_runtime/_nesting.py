"""Parent and child saga coordination: what each does next, as pure decisions.

A child saga run as a step reports its steps done to its parent and waits, held open, for the
parent's word (``release`` or ``compensate``). Cancellations cross that conversation in any order:
the parent may be cancelled before, while or after the child reports; the child may be cancelled
by its parent or by an operator; a cancel may arrive in the same workflow task that resolves a
Temporal operation, and the SDK then returns the operation's result without raising it (only
``workflow.cancellation_reason()`` tells). The runtime asks these functions at each waiting point;
``tests/model/test_nesting_model.py`` checks every interleaving of those events against them.
"""

from __future__ import annotations

from typing import Literal

__all__ = ["ChildUndo", "HeldChoice", "child_undo", "held_child_choice"]

HeldChoice = Literal["release", "compensate"]
ChildUndo = Literal["nothing", "cancel", "compensate"]


def held_child_choice(parent_says: HeldChoice | None, cancel_requested: bool) -> HeldChoice | None:
    """What a held child saga does now, or None to keep waiting.

    Args:
        parent_says: The parent's decision, once it arrived.
        cancel_requested: Whether this child was asked to cancel (by its parent undoing it before
            it heard "steps done", or by an operator), seen or swallowed.

    The parent's word comes first: a release means the parent completed with this child in it, so
    a later cancel is too late (as for any completed saga). Without a word, a cancel request means
    compensate: nobody will decide for a child whose parent already asked it to cancel.
    """
    if parent_says is not None:
        return parent_says
    return "compensate" if cancel_requested else None


def child_undo(*, start_asked: bool, started: bool, reported_done: bool, ended: bool) -> ChildUndo:
    """How a parent saga undoes its child step.

    Args:
        start_asked: The parent asked the server to start the child.
        started: The parent holds the child's handle (its start was acknowledged).
        reported_done: The child's "steps done" signal reached the parent: it is held.
        ended: The child's run is over (it compensated itself, or was cancelled).

    Returns:
        ``nothing`` (never started, or already over), ``compensate`` (signal the held child) or
        ``cancel`` (ask it to cancel: it compensates what it did, held or not).
    """
    if not start_asked or ended:
        return "nothing"
    if started and reported_done:
        return "compensate"
    return "cancel"
