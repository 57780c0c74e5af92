"""The workflow that holds exclusive keys: a shard of many keys.

A :class:`KeyShard` (``sagaloom-keys:<n>``, one of :data:`SHARDS`) holds every key that hashes
to it: it lives as long as any of its keys is held or waited for, so a saga on a key nobody
else uses sends an Update to a running workflow instead of starting one. It runs on its own
task queue (:data:`~sagaloom._wire._names.KEY_QUEUE`, served beside every sagaloom worker), so a
saga asking for a key from a local activity never waits for a workflow task slot that sagas
hold. It grants in arrival order, checks every few seconds that a holder others wait behind is
still running (a terminated holder never releases), and continues as new to keep its history
short. It runs outside the workflow sandbox (``sandboxed=False``): it is the engine's own code,
with no user code in it, and two tasks per saga on disjoint keys are too many to pay the
sandbox's per-task cost (measured in docs/benchmarks.md); its determinism is guarded by replay
tests like every saga's.
"""

from __future__ import annotations

import asyncio
import zlib
from datetime import datetime, timedelta

from pydantic import BaseModel, Field
from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import FailureError

from sagaloom._runtime._keyrules import (
    KeyAnswer,
    KeyLockState,
    KeyRequest,
    acquire,
    free,
    grant_next,
    release,
)
from sagaloom._wire._names import (
    KEY_ACQUIRE_MANY_UPDATE,
    KEY_ACQUIRE_UPDATE,
    KEY_CLOSED_ACTIVITY,
    KEY_GRANTED_SIGNAL,
    KEY_RELEASE_KEYS_SIGNAL,
    KEY_SHARD_PREFIX,
    KEY_SHARD_WORKFLOW,
    KEY_STATE_QUERY,
)

__all__ = [
    "SHARDS",
    "KeyRelease",
    "KeyShard",
    "KeyShardState",
    "releases",
    "shard_id",
    "shard_of",
]

SHARDS = 16
"""Key shards per namespace. Part of the protocol: every worker must hash keys alike."""
SHARD_IDLE = timedelta(minutes=5)
"""How long a shard none of whose keys is held or asked for stays up before it ends."""
HOLDER_CHECK = timedelta(seconds=5)
"""How often a lock with waiters checks that their holders' runs are still open."""
LONG_HISTORY = 5_000
"""Events after which a lock continues as new (its state carried over)."""


def shard_of(key: str) -> int:
    """The shard that holds ``key`` (a stable hash: the same on every worker and Python)."""
    return zlib.crc32(key.encode()) % SHARDS


def shard_id(shard: int) -> str:
    """The workflow id of key shard ``shard``."""
    return f"{KEY_SHARD_PREFIX}{shard:02d}"


class _Changes:
    """A flag the handlers raise when they change the lock's state; the run loop waits on it."""

    def __init__(self) -> None:
        self.raised = False

    def note(self) -> None:
        """Something changed: wake the run loop."""
        self.raised = True

    async def wait(self, within: timedelta | None) -> bool:
        """Wait until something changed (True) or ``within`` passed (False)."""
        try:
            await workflow.wait_condition(lambda: self.raised, timeout=within)
        except TimeoutError:
            return False
        self.raised = False
        return True


class KeyRelease(BaseModel):
    """A saga is done with these keys of one shard (held, shared or waited for)."""

    saga_id: str = Field(min_length=1)
    keys: list[str] = Field(min_length=1)
    early_only: bool = False
    """Free only keys taken early and not asked for since (a start that did not happen)."""


def releases(saga_id: str, keys: list[str], *, early_only: bool = False) -> list[KeyRelease]:
    """Saga ``saga_id`` is done with ``keys``: what to tell each of their shards, in order."""
    by_shard: dict[int, list[str]] = {}
    for key in keys:
        by_shard.setdefault(shard_of(key), []).append(key)
    return [KeyRelease(saga_id=saga_id, keys=mine, early_only=early_only)
            for _, mine in sorted(by_shard.items())]  # fmt: skip


class KeyShardState(BaseModel):
    """A shard's keys that someone holds or waits for (carried over continue-as-new)."""

    shard: int = Field(ge=0, lt=SHARDS)
    keys: dict[str, KeyLockState] = Field(default_factory=dict)


@workflow.defn(name=KEY_SHARD_WORKFLOW, sandboxed=False)
class KeyShard:
    """The keys of one shard: each granted to one saga at a time, in arrival order."""

    @workflow.init
    def __init__(self, state: KeyShardState) -> None:
        self.state = state
        self._changed = _Changes()
        self._next_check: datetime | None = None
        self._telling: set[asyncio.Task[None]] = set()

    @workflow.run
    async def run(self, state: KeyShardState) -> None:
        """Grant keys in turn until no key is held for :data:`SHARD_IDLE`; stay short."""
        while True:
            self._grant_free_keys()
            keys = self.state.keys
            for key in [k for k, lock in keys.items() if lock.idle()]:
                del keys[key]
            if not keys:
                if not await self._changed.wait(SHARD_IDLE):
                    await self._quiet()
                    if not self.state.keys:
                        return  # idle: the next saga asking starts a new run
                continue
            info = workflow.info()
            if (
                info.get_current_history_length() > LONG_HISTORY
                or info.is_continue_as_new_suggested()
            ):
                await self._quiet()
                workflow.continue_as_new(self.state)
            if not any(lock.queue for lock in keys.values()):
                self._next_check = None  # nobody waits: a holder may take its time
                await self._changed.wait(None)
                continue
            now = workflow.now()
            self._next_check = self._next_check or now + HOLDER_CHECK
            if now < self._next_check:
                await self._changed.wait(self._next_check - now)
                continue
            self._next_check = None
            await self._free_closed_holders()

    @workflow.query(name=KEY_STATE_QUERY)
    def describe(self) -> KeyShardState:
        """Every key held or waited for: its holder, guests and queue."""
        return self.state

    @workflow.update(name=KEY_ACQUIRE_UPDATE)
    def acquire(self, request: KeyRequest) -> KeyAnswer:
        """Grant the key now (free, already this saga's, or its parent's) or queue the saga."""
        return self._take(request)

    @acquire.validator
    def _check(self, request: KeyRequest) -> None:
        if shard_of(request.key) != self.state.shard:
            raise ValueError(f"key {request.key!r} belongs to shard {shard_of(request.key)}, "
                             f"not {self.state.shard}")  # fmt: skip

    @workflow.update(name=KEY_ACQUIRE_MANY_UPDATE)
    def acquire_many(self, requests: list[KeyRequest]) -> list[KeyAnswer]:
        """:meth:`acquire` for each request, in order: a worker's asks sent together."""
        return [self._take(request) for request in requests]

    @acquire_many.validator
    def _check_many(self, requests: list[KeyRequest]) -> None:
        if not requests:
            raise ValueError("no request")
        for request in requests:
            self._check(request)

    @workflow.signal(name=KEY_RELEASE_KEYS_SIGNAL)
    def release(self, done: KeyRelease) -> None:
        """``done.saga_id`` is done with ``done.keys`` (or no longer waits for them)."""
        for key in done.keys:
            if key in self.state.keys:
                release(self.state.keys[key], done.saga_id, early_only=done.early_only)
        self._changed.note()

    def _take(self, request: KeyRequest) -> KeyAnswer:
        lock = self.state.keys.setdefault(request.key, KeyLockState(key=request.key))
        answer = acquire(lock, request, workflow.now())
        self._changed.note()
        return answer

    async def _quiet(self) -> None:
        """Every handler has finished and every grant has been told."""
        await workflow.wait_condition(
            lambda: workflow.all_handlers_finished() and not self._telling
        )

    def _grant_free_keys(self) -> None:
        """Each free key with waiters goes to its first waiter (told without waiting here)."""
        now = workflow.now()
        for lock in self.state.keys.values():
            waiter = grant_next(lock, now)
            if waiter is not None:
                task = asyncio.create_task(self._tell(lock, waiter.saga_id))
                self._telling.add(task)
                task.add_done_callback(self._telling.discard)

    async def _tell(self, lock: KeyLockState, saga_id: str) -> None:
        """Signal ``saga_id`` that ``lock``'s key is its own; if its run closed, free the key."""
        try:
            await workflow.get_external_workflow_handle(saga_id).signal(
                KEY_GRANTED_SIGNAL, lock.key
            )
        except FailureError as err:  # its run closed while it waited: the next one
            workflow.logger.info("key %s: waiter %s is gone (%s)", lock.key, saga_id, err)
            if lock.holder == saga_id:
                free(lock)
                self._changed.note()

    async def _free_closed_holders(self) -> None:
        """Others wait: free each key whose holder's run closed without releasing it."""
        now = workflow.now()  # a key taken for a saga about to start: not looked for yet
        held = {lock.key: lock.holder for lock in self.state.keys.values()
                if lock.queue and lock.holder is not None and not lock.starting(now)}  # fmt: skip
        if not held:
            return
        closed = await workflow.execute_activity(
            KEY_CLOSED_ACTIVITY,
            sorted(set(held.values())),
            result_type=list[str],
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=RetryPolicy(maximum_interval=timedelta(seconds=10)),
            summary=f"are the holders of {len(held)} waited-for keys still running?",
        )
        for key, holder in held.items():
            lock = self.state.keys.get(key)
            if holder in closed and lock is not None and lock.holder == holder:
                workflow.logger.warning("key %s: holder %s closed without releasing it; "
                                        "granting onward", key, holder)  # fmt: skip
                free(lock)
