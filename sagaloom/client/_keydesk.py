"""A process's asks for exclusive keys, sent to each key shard one Update at a time.

Two kinds of asks come here: a saga's (its local activity, on the worker) and ``start_saga``'s,
which takes a saga's free keys before starting it (:meth:`KeyDesk.take_early`), so that most
sagas on keys nobody else uses never ask at all.

Temporal refuses a workflow more than a few Updates in flight at once (10 by default:
``history.maxInFlightUpdates``). A burst of sagas asking for keys of one shard would exceed it,
and each refused ask would wait for its local activity's retry. So a worker sends each shard
one Update at a time: the asks that come in while one is in flight go together in the next
(``acquire-many``), answered in order. Nothing waits on purpose: a lone ask leaves at once.

A shard served by an older worker that lacks ``acquire-many`` gets the asks one by one.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from dataclasses import dataclass, field

from temporalio.client import Client, WithStartWorkflowOperation, WorkflowUpdateFailedError
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.service import RPCError, RPCStatusCode

from sagaloom._runtime._keylocks import KeyRelease, KeyShardState, releases, shard_id, shard_of
from sagaloom._runtime._keyrules import EarlyKeys, KeyAnswer, KeyRequest
from sagaloom._wire._names import (
    KEY_ACQUIRE_MANY_UPDATE,
    KEY_ACQUIRE_UPDATE,
    KEY_QUEUE,
    KEY_RELEASE_KEYS_SIGNAL,
    KEY_SHARD_WORKFLOW,
)

__all__ = [
    "EARLY_PATIENCE",
    "MOST_AT_ONCE",
    "MOST_EARLY_KEYS",
    "KeyDesk",
    "acquire_one",
    "desk_of",
    "lock_start",
]

MOST_AT_ONCE = 200
"""Most asks in one Update (each is a few hundred bytes)."""
EARLY_PATIENCE = 2.0
"""Seconds ``start_saga`` waits for a shard's early answer (no worker yet: the saga asks)."""
EARLY_PAUSE = 30.0
"""Seconds early asks stop after a shard did not answer in time."""
MOST_EARLY_KEYS = 20
"""Most keys taken for a saga before its start (its memo stays small; it asks for the rest)."""

_log = logging.getLogger(__name__)

_Ask = tuple[KeyRequest, "asyncio.Future[KeyAnswer]"]


@dataclass
class _Shard:
    waiting: list[_Ask] = field(default_factory=list)
    sender: asyncio.Task[None] | None = None


class KeyDesk:
    """One client's asks for keys, batched per shard (one Update in flight per shard)."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self._shards: dict[int, _Shard] = {}
        self._early_paused_until = 0.0

    async def take_early(self, keys: list[str], saga_id: str) -> EarlyKeys | None:
        """Take ``keys`` (sorted) for saga ``saga_id`` before it starts, while each is free.

        Stops at the first key held or waited for by anyone (the saga queues for it itself),
        at the first failure or slow answer, and after :data:`MOST_EARLY_KEYS`: then the saga
        asks for the rest. A key taken here for a saga that never starts is freed by its
        shard's closed-holder check.

        Returns:
            The keys taken, in order, and when (``None``: none taken).
        """
        taken: list[str] = []
        since = None  # the first grant's time (the saga's trust counts from it)
        for key in keys[:MOST_EARLY_KEYS]:
            if time.monotonic() < self._early_paused_until:
                break
            try:
                answer = await asyncio.wait_for(
                    self.ask(KeyRequest(key=key, saga_id=saga_id, early=True)), EARLY_PATIENCE
                )
            except Exception as err:  # no worker serves the shards yet, or an RPC failed
                self._early_paused_until = time.monotonic() + EARLY_PAUSE
                _log.info("key %s not taken before the start (%s); the saga asks for it",
                          key, type(err).__name__)  # fmt: skip
                break
            if not answer.granted or answer.since is None:
                break
            taken.append(key)
            since = since or answer.since
        return EarlyKeys(keys=taken, since=since) if since else None

    async def drop_early(self, early: EarlyKeys, saga_id: str) -> None:
        """The saga ``early`` was taken for did not start: free those keys it has not asked for."""
        await self.tell(releases(saga_id, early.keys, early_only=True))

    async def tell(self, dones: list[KeyRelease]) -> None:
        """Send each release (keys of one shard) to its shard, together."""
        await asyncio.gather(*(self._tell(done) for done in dones))

    async def _tell(self, done: KeyRelease) -> None:
        """Send ``done`` to its shard (a shard gone: it held nothing)."""
        try:
            await self.client.get_workflow_handle(shard_id(shard_of(done.keys[0]))).signal(
                KEY_RELEASE_KEYS_SIGNAL, done
            )
        except RPCError as err:
            if err.status != RPCStatusCode.NOT_FOUND:
                raise

    async def ask(self, request: KeyRequest) -> KeyAnswer:
        """The shard's answer to ``request``, sent alone or with the asks waiting beside it."""
        number = shard_of(request.key)
        shard = self._shards.setdefault(number, _Shard())
        answer: asyncio.Future[KeyAnswer] = asyncio.get_running_loop().create_future()
        shard.waiting.append((request, answer))
        if shard.sender is None:
            shard.sender = asyncio.create_task(self._send(number, shard))
        return await answer

    async def _send(self, number: int, shard: _Shard) -> None:
        """Send what waits, one Update at a time, until nothing does."""
        batch: list[_Ask] = []
        try:
            while shard.waiting:
                batch = shard.waiting[:MOST_AT_ONCE]
                del shard.waiting[:MOST_AT_ONCE]
                try:
                    answers = await self._acquire(number, [request for request, _ in batch])
                except Exception as err:  # told to each asker (its local activity retries)
                    for _, answer in batch:
                        if not answer.done():
                            answer.set_exception(err)
                    continue
                for (_, answer), given in zip(batch, answers, strict=True):
                    if not answer.done():  # an asker cancelled meanwhile asks again later
                        answer.set_result(given)
        finally:
            shard.sender = None
            for _, answer in batch + shard.waiting:  # the desk stopped (the worker shuts down)
                answer.cancel()
            shard.waiting.clear()

    async def _acquire(self, number: int, requests: list[KeyRequest]) -> list[KeyAnswer]:
        start = lock_start(KEY_SHARD_WORKFLOW, KeyShardState(shard=number), shard_id(number),
                           KEY_QUEUE, f"exclusive keys, shard {number}")  # fmt: skip
        if len(requests) == 1:
            return [await acquire_one(self.client, requests[0], start)]
        try:
            answers: list[KeyAnswer] = await self.client.execute_update_with_start_workflow(
                KEY_ACQUIRE_MANY_UPDATE,
                requests,
                start_workflow_operation=start,
                result_type=list[KeyAnswer],
            )
            return answers
        except WorkflowUpdateFailedError as err:
            if KEY_ACQUIRE_MANY_UPDATE not in str(err.cause):
                raise
        return [await acquire_one(self.client, r, start) for r in requests]  # an older shard


def lock_start(
    workflow: str, state: object, workflow_id: str, queue: str, summary: str
) -> WithStartWorkflowOperation[object, None]:
    """Start lock ``workflow_id`` (a shard, or a per-key lock) with ``state`` if not running."""
    return WithStartWorkflowOperation(
        workflow,
        state,
        id=workflow_id,
        task_queue=queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        static_summary=summary,
    )


async def acquire_one(
    client: Client, request: KeyRequest, start: WithStartWorkflowOperation[object, None]
) -> KeyAnswer:
    """Send the ``acquire`` Update to ``start``'s lock, starting it if needed."""
    answer: KeyAnswer = await client.execute_update_with_start_workflow(
        KEY_ACQUIRE_UPDATE, request, start_workflow_operation=start, result_type=KeyAnswer
    )
    return answer


_DESKS: weakref.WeakKeyDictionary[Client, KeyDesk] = weakref.WeakKeyDictionary()


def desk_of(client: Client) -> KeyDesk:
    """The desk of ``client`` (one per client, so per worker process and connection)."""
    desk = _DESKS.get(client)
    if desk is None:
        desk = _DESKS[client] = KeyDesk(client)
    return desk
