"""The rules of one exclusive key, apart from any I/O: who gets it, who waits, who is next.

A key's state (:class:`KeyLockState`) has a holder, the child sagas sharing the holder's hold
(guests) and a first-in-first-out queue. Both lock workflows (a shard of many keys, and the
older one-workflow-per-key lock) apply these rules and only add the messages around them.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

__all__ = [
    "KeyAnswer",
    "KeyLockState",
    "KeyRequest",
    "acquire",
    "free",
    "grant_next",
    "release",
]


class KeyRequest(BaseModel):
    """A saga asks for a key."""

    key: str = Field(min_length=1)
    saga_id: str = Field(min_length=1)
    """The asking saga's workflow id (the holder's name)."""
    family: list[str] = Field(default_factory=list)
    """The saga's parent and root saga ids: a key one of them holds is shared with it."""


class KeyAnswer(BaseModel):
    """The lock's answer: granted now, or queued behind ``holder``."""

    granted: bool
    holder: str | None = None
    position: int = 0
    """Place in the queue (1: next); 0 when granted."""


class KeyLockState(BaseModel):
    """A key's lock: who holds it, who shares it, who waits (carried over continue-as-new)."""

    key: str
    holder: str | None = None
    since: datetime | None = None
    guests: list[str] = Field(default_factory=list)
    """Child sagas sharing the holder's hold."""
    queue: list[KeyRequest] = Field(default_factory=list)

    def idle(self) -> bool:
        """Nobody holds the key or waits for it."""
        return self.holder is None and not self.queue


def acquire(state: KeyLockState, request: KeyRequest, now: datetime) -> KeyAnswer:
    """Grant the key now (free, already this saga's, or its parent's) or queue the saga.

    Asking again is harmless: a holder stays the holder, a waiter keeps its place.
    """
    if state.holder == request.saga_id or request.saga_id in state.guests:
        return KeyAnswer(granted=True, holder=state.holder)  # asked again (a retry, a reset)
    if state.idle():
        state.holder, state.since = request.saga_id, now
        return KeyAnswer(granted=True, holder=state.holder)
    if state.holder is not None and state.holder in request.family:
        state.guests.append(request.saga_id)  # a child of the holder: shares its hold
        return KeyAnswer(granted=True, holder=state.holder)
    waiting = [r.saga_id for r in state.queue]
    if request.saga_id not in waiting:
        state.queue.append(request)
        waiting.append(request.saga_id)
    return KeyAnswer(
        granted=False, holder=state.holder, position=waiting.index(request.saga_id) + 1
    )


def release(state: KeyLockState, saga_id: str) -> None:
    """``saga_id`` is done with the key (held, shared or waited for)."""
    if state.holder == saga_id:
        free(state)
    elif saga_id in state.guests:
        state.guests.remove(saga_id)
    else:
        state.queue = [r for r in state.queue if r.saga_id != saga_id]


def free(state: KeyLockState) -> None:
    """The key has no holder (nor guests) now."""
    state.holder, state.since, state.guests = None, None, []


def grant_next(state: KeyLockState, now: datetime) -> KeyRequest | None:
    """A free key goes to its first waiter (returned, to be told); None: held, or none waits."""
    if state.holder is not None or not state.queue:
        return None
    waiter = state.queue.pop(0)
    state.holder, state.since = waiter.saga_id, now
    return waiter
