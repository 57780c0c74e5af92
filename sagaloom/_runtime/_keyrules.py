"""The rules of one exclusive key, apart from any I/O: who gets it, who waits, who is next.

A key's state (:class:`KeyLockState`) has a holder, the child sagas sharing the holder's hold
(guests) and a first-in-first-out queue. Both lock workflows (a shard of many keys, and the
older one-workflow-per-key lock) apply these rules and only add the messages around them.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from pydantic import BaseModel, Field

__all__ = [
    "EARLY_GRACE",
    "EARLY_TRUST",
    "EarlyKeys",
    "KeyAnswer",
    "KeyLockState",
    "KeyRequest",
    "acquire",
    "free",
    "grant_next",
    "release",
]


EARLY_TRUST = timedelta(seconds=5)
"""How soon after its keys were taken a saga must start to count them as its own (else it asks)."""
EARLY_GRACE = timedelta(seconds=10)
"""How long a key taken for a saga not started yet is safe from the closed-holder check.

Longer than :data:`EARLY_TRUST`: a saga that counts its keys taken early exists before any
check can find it missing (both are the server's clock).
"""


class KeyRequest(BaseModel):
    """A saga asks for a key."""

    key: str = Field(min_length=1)
    saga_id: str = Field(min_length=1)
    """The asking saga's workflow id (the holder's name)."""
    family: list[str] = Field(default_factory=list)
    """The saga's parent and root saga ids: a key one of them holds is shared with it."""
    early: bool = False
    """Asked by ``start_saga`` before the saga starts: granted only if free, never queued."""


class KeyAnswer(BaseModel):
    """The lock's answer: granted now, or queued behind ``holder``."""

    granted: bool
    holder: str | None = None
    position: int = 0
    """Place in the queue (1: next); 0 when granted."""
    since: datetime | None = None
    """When the hold began (granted answers)."""


class EarlyKeys(BaseModel):
    """The keys ``start_saga`` took for a saga before starting it (the saga's memo)."""

    keys: list[str]
    since: datetime


class KeyLockState(BaseModel):
    """A key's lock: who holds it, who shares it, who waits (carried over continue-as-new)."""

    key: str
    holder: str | None = None
    since: datetime | None = None
    guests: list[str] = Field(default_factory=list)
    """Child sagas sharing the holder's hold."""
    queue: list[KeyRequest] = Field(default_factory=list)
    early: bool = False
    """The holder was granted the key before it started (by ``start_saga``), not asked since."""

    def idle(self) -> bool:
        """Nobody holds the key or waits for it."""
        return self.holder is None and not self.queue

    def starting(self, now: datetime) -> bool:
        """Taken for a saga that may not have started yet: its run is not looked for."""
        return self.early and self.since is not None and now - self.since < EARLY_GRACE


def acquire(state: KeyLockState, request: KeyRequest, now: datetime) -> KeyAnswer:
    """Grant the key now (free, already this saga's, or its parent's) or queue the saga.

    Asking again is harmless: a holder stays the holder, a waiter keeps its place. An early
    ask (``start_saga``'s, before the saga starts) is granted a free key only: it never
    queues, and a key the saga holds already is not counted as taken early (the saga asks).
    """
    if request.early:
        if not state.idle():
            return KeyAnswer(granted=False, holder=state.holder)
        state.holder, state.since, state.early = request.saga_id, now, True
        return KeyAnswer(granted=True, holder=state.holder, since=now)
    if state.holder == request.saga_id or request.saga_id in state.guests:
        if state.holder == request.saga_id:
            state.early = False  # the saga is running: it asked itself
        return KeyAnswer(granted=True, holder=state.holder, since=state.since)
    if state.idle():
        state.holder, state.since = request.saga_id, now
        return KeyAnswer(granted=True, holder=state.holder, since=now)
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


def release(state: KeyLockState, saga_id: str, *, early_only: bool = False) -> None:
    """``saga_id`` is done with the key (held, shared or waited for).

    With ``early_only`` (its start did not happen), only a hold taken early that the saga has
    not asked for since is freed: one it asked for is its own.
    """
    if early_only:
        if state.holder == saga_id and state.early:
            free(state)
        return
    if state.holder == saga_id:
        free(state)
    elif saga_id in state.guests:
        state.guests.remove(saga_id)
    else:
        state.queue = [r for r in state.queue if r.saga_id != saga_id]


def free(state: KeyLockState) -> None:
    """The key has no holder (nor guests) now."""
    state.holder, state.since, state.guests, state.early = None, None, [], False


def grant_next(state: KeyLockState, now: datetime) -> KeyRequest | None:
    """A free key goes to its first waiter (returned, to be told); None: held, or none waits."""
    if state.holder is not None or not state.queue:
        return None
    waiter = state.queue.pop(0)
    state.holder, state.since = waiter.saga_id, now
    return waiter
