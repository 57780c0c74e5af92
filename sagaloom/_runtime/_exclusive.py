"""Exclusive keys: sagas that share a key run their steps one at a time, in arrival order.

Each key has a lock: a small workflow (``sagaloom-key:<key>``) holding the key's holder and a
first-in-first-out queue of waiting sagas. Before its first step, a saga with
``Saga(exclusive=...)`` asks for its keys one by one in one global (sorted) order — so two sagas
taking the same two keys never hold one each — through an activity that sends the lock an
``acquire`` Update, starting the lock if it is not running (Update-with-Start). The Update
answers at once: granted, or queued behind the holder; a queued saga waits for the lock's
``granted`` signal. However the saga ends, it signals ``release`` to each key it asked for (a
waiter that gives up leaves the queue the same way), and the lock grants the next waiter.

A holder that closes without releasing (terminated, its run reset elsewhere) would block the
key for ever: while others wait, the lock checks its holder's run every few seconds and grants
onward once it closed; a waiter that closed meanwhile is skipped. A saga started as a child of
the key's holder (or of the holder's root) shares its hold: the key is granted to it at once and
its release leaves the parent's hold in place. The lock continues as new to keep its history
short, and ends when nobody held or asked for its key for a while.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from pydantic import BaseModel, Field
from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import FailureError

from sagaloom._names import (
    KEY_ACQUIRE_UPDATE,
    KEY_GRANTED_SIGNAL,
    KEY_HOLDER_ACTIVITY,
    KEY_LOCK_PREFIX,
    KEY_LOCK_WORKFLOW,
    KEY_RELEASE_SIGNAL,
    KEY_REQUEST_ACTIVITY,
    KEY_STATE_QUERY,
)
from sagaloom._runtime._progress import Progress

__all__ = [
    "ExclusiveTimeout",
    "KeyAnswer",
    "KeyLock",
    "KeyLockState",
    "KeyRequest",
    "SagaKeys",
    "lock_id",
]

IDLE = timedelta(seconds=30)
"""How long a lock nobody holds or asks for stays up before it ends."""
HOLDER_CHECK = timedelta(seconds=5)
"""How often a lock with waiters checks that its holder's run is still open."""
LONG_HISTORY = 5_000
"""Events after which a lock continues as new (its state carried over)."""


def lock_id(key: str) -> str:
    """The workflow id of ``key``'s lock."""
    return f"{KEY_LOCK_PREFIX}{key}"


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


class ExclusiveTimeout(Exception):
    """A saga waited longer than its ``exclusive_timeout`` for a key."""

    def __init__(self, key: str, holder: str | None, waited: timedelta) -> None:
        super().__init__(
            f"waited {waited.total_seconds():.0f}s for exclusive key {key!r}, "
            f"held by {holder or 'another saga'}"
        )
        self.key, self.holder = key, holder


@workflow.defn(name=KEY_LOCK_WORKFLOW)
class KeyLock:
    """One key's lock: grants it to one saga at a time, in arrival order."""

    @workflow.init
    def __init__(self, state: KeyLockState) -> None:
        self.state = state
        self._changed = False

    @workflow.run
    async def run(self, state: KeyLockState) -> None:
        """Grant the key in turn until it is idle for :data:`IDLE`; continue as new when long."""
        while True:
            await self._grant_next()
            s = self.state
            if s.holder is None and not s.queue:
                if not await self._changes(IDLE):
                    await workflow.wait_condition(workflow.all_handlers_finished)
                    if s.holder is None and not s.queue:
                        return  # idle: the next saga asking starts a new run
                continue
            if workflow.info().get_current_history_length() > LONG_HISTORY:
                await workflow.wait_condition(workflow.all_handlers_finished)
                workflow.continue_as_new(self.state)
            if not await self._changes(HOLDER_CHECK if s.queue else None):
                await self._check_holder()

    @workflow.query(name=KEY_STATE_QUERY)
    def describe(self) -> KeyLockState:
        """The lock's holder, guests and queue."""
        return self.state

    @workflow.update(name=KEY_ACQUIRE_UPDATE)
    def acquire(self, request: KeyRequest) -> KeyAnswer:
        """Grant the key now (free, already this saga's, or its parent's) or queue the saga."""
        s = self.state
        if s.holder == request.saga_id or request.saga_id in s.guests:
            return KeyAnswer(granted=True, holder=s.holder)  # asked again (a retry, a reset)
        if s.holder is None and not s.queue:
            s.holder, s.since, self._changed = request.saga_id, workflow.now(), True
            return KeyAnswer(granted=True, holder=s.holder)
        if s.holder is not None and s.holder in request.family:
            s.guests.append(request.saga_id)  # a child of the holder: shares its hold
            return KeyAnswer(granted=True, holder=s.holder)
        waiting = [r.saga_id for r in s.queue]
        if request.saga_id not in waiting:
            s.queue.append(request)
            waiting.append(request.saga_id)
            self._changed = True
        return KeyAnswer(
            granted=False, holder=s.holder, position=waiting.index(request.saga_id) + 1
        )

    @acquire.validator
    def _check(self, request: KeyRequest) -> None:
        if request.key != self.state.key:
            raise ValueError(f"this lock is for key {self.state.key!r}, not {request.key!r}")

    @workflow.signal(name=KEY_RELEASE_SIGNAL)
    def release(self, saga_id: str) -> None:
        """``saga_id`` is done with the key (or no longer waits for it)."""
        s = self.state
        if s.holder == saga_id:
            s.holder, s.since, s.guests = None, None, []
        elif saga_id in s.guests:
            s.guests.remove(saga_id)
        else:
            s.queue = [r for r in s.queue if r.saga_id != saga_id]
        self._changed = True

    async def _changes(self, within: timedelta | None) -> bool:
        """Wait until a handler changed something (True) or ``within`` passed (False)."""
        try:
            await workflow.wait_condition(lambda: self._changed, timeout=within)
        except TimeoutError:
            return False
        self._changed = False
        return True

    async def _grant_next(self) -> None:
        """While the key is free, grant it to the first waiter whose run is open."""
        s = self.state
        while s.holder is None and s.queue:
            waiter = s.queue.pop(0)
            s.holder, s.since = waiter.saga_id, workflow.now()
            try:
                handle = workflow.get_external_workflow_handle(waiter.saga_id)
                await handle.signal(KEY_GRANTED_SIGNAL, s.key)
            except FailureError as err:  # its run closed while it waited: next
                workflow.logger.info("key %s: waiter %s is gone (%s)", s.key, waiter.saga_id, err)
                if s.holder == waiter.saga_id:
                    s.holder, s.since = None, None

    async def _check_holder(self) -> None:
        """Others wait: free the key if its holder's run closed without releasing it."""
        holder = self.state.holder
        if holder is None:
            return
        open_ = await workflow.execute_activity(
            KEY_HOLDER_ACTIVITY,
            holder,
            result_type=bool,
            start_to_close_timeout=timedelta(seconds=10),
            retry_policy=RetryPolicy(maximum_interval=timedelta(seconds=10)),
            summary=f"is {holder} still running?",
        )
        if not open_ and self.state.holder == holder:
            workflow.logger.warning("key %s: holder %s closed without releasing it; "
                                    "granting onward", self.state.key, holder)  # fmt: skip
            self.state.holder, self.state.since, self.state.guests = None, None, []


class SagaKeys:
    """A saga's side: ask for each key in order, wait for it, release them all at the end."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.granted: set[str] = set()
        self.asked: list[str] = []

    def on_granted(self, key: str) -> None:
        """The lock's ``granted`` signal."""
        self.granted.add(key)

    async def take(self, keys: list[str], patience: timedelta | None) -> None:
        """Take ``keys`` (sorted) one by one, waiting for each in turn.

        Raises:
            ExclusiveTimeout: ``patience`` (the saga's ``exclusive_timeout``) passed before
                every key was taken.
        """
        info = workflow.info()
        family = [w for w in (info.parent.workflow_id if info.parent else None,
                              info.root.workflow_id if info.root else None) if w]  # fmt: skip
        started = workflow.now()
        for key in keys:
            self.asked.append(key)
            # A regular activity, not a local one: a local activity would hold the saga's
            # workflow task open while the lock (on the same task queue) needs one to answer;
            # under load every workflow task slot waits on a lock that has none (measured: the
            # benchmark deadlocked at 200 sagas).
            answer = await workflow.execute_activity(
                KEY_REQUEST_ACTIVITY,
                KeyRequest(key=key, saga_id=info.workflow_id, family=family),
                result_type=KeyAnswer,
                start_to_close_timeout=timedelta(seconds=15),
                retry_policy=RetryPolicy(maximum_interval=timedelta(seconds=5)),
                summary=f"take exclusive key {key}",
            )
            if answer.granted:
                self.granted.add(key)
                continue
            self.progress.waiting_for_key(key, answer.holder)
            left = None if patience is None else patience - (workflow.now() - started)
            try:
                if left is not None and left <= timedelta(0):
                    raise TimeoutError
                await workflow.wait_condition(self._has(key), timeout=left)
            except TimeoutError:
                raise ExclusiveTimeout(key, answer.holder, workflow.now() - started) from None
            self.progress.key_taken(key)

    def _has(self, key: str) -> Callable[[], bool]:
        return lambda: key in self.granted

    async def release(self) -> None:
        """Tell every key asked for that this saga is done with it (held or waited for)."""
        saga_id = workflow.info().workflow_id
        for key in reversed(self.asked):
            try:
                await workflow.get_external_workflow_handle(lock_id(key)).signal(
                    KEY_RELEASE_SIGNAL, saga_id
                )
            except FailureError as err:  # the lock ended (nobody else asked): nothing to free
                workflow.logger.info("key %s: release not delivered (%s)", key, err)
        self.asked.clear()
