"""Exclusive keys, the saga's side: take each key before the first step, release them at the end.

Sagas that share a key run their steps one at a time, in arrival order. Before its first step,
a saga with ``Saga(exclusive=...)`` asks for its keys one by one in one global (sorted) order —
so two sagas taking the same two keys never hold one each — through a local activity that
sends the key's shard (``_keylocks.KeyShard``) an ``acquire`` Update, starting the shard if it
is not running (Update-with-Start). The Update answers at once: granted, or queued behind the
holder; a queued saga waits for the shard's ``granted`` signal (and asks again now and then, in
case the shard was lost meanwhile). However the saga ends, a local activity tells each shard
that the saga is done with its keys (a waiter that gives up leaves the queue the same way).

A saga started by ``start_saga`` usually finds its keys taken already: the client took each free
one before the start (``sagaloom.client._keydesk``) and listed them in the saga's memo
(:data:`~sagaloom._wire._names.KEY_EARLY_MEMO`). The saga counts them as its own without asking —
if its run is the first of its id (not a reset) and began within :data:`EARLY_TRUST` of the
grant — and asks for the rest as above. A key held by someone else is never taken early: the
saga queues for it itself, in arrival order.

A local activity records one marker in the saga's history where an activity would add a task
and a workflow task.

A child saga of the key's holder (or of the holder's root) shares its hold: the key is granted
to it at once and its release leaves the parent's hold in place.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

from sagaloom._runtime._keylocks import releases
from sagaloom._runtime._keyrules import EARLY_TRUST, EarlyKeys, KeyAnswer, KeyRequest
from sagaloom._runtime._progress import Progress
from sagaloom._wire._names import KEY_ASK_ACTIVITY, KEY_EARLY_MEMO, KEY_RELEASE_ACTIVITY

__all__ = ["ExclusiveTimeout", "SagaKeys"]

ASK_AGAIN = timedelta(seconds=60)
"""How often a waiting saga asks for its key again (harmless; heals a lost shard)."""
_QUICK = RetryPolicy(maximum_interval=timedelta(seconds=2))


class ExclusiveTimeout(Exception):
    """A saga waited longer than its ``exclusive_timeout`` for a key."""

    def __init__(self, key: str, holder: str | None, waited: timedelta) -> None:
        super().__init__(
            f"waited {waited.total_seconds():.0f}s for exclusive key {key!r}, "
            f"held by {holder or 'another saga'}"
        )
        self.key, self.holder = key, holder


class SagaKeys:
    """A saga's side: ask for each key in order, wait for it, release them all at the end."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.granted: set[str] = set()
        self.asked: list[str] = []

    def on_granted(self, key: str) -> None:
        """The lock's ``granted`` signal."""
        self.granted.add(key)

    async def take(
        self,
        keys: list[str],
        patience: timedelta | None,
        *,
        taken: list[str] | None = None,
    ) -> None:
        """Take ``keys`` (sorted) one by one, waiting for each in turn.

        Args:
            keys: The saga's keys, sorted.
            patience: The saga's ``exclusive_timeout``.
            taken: The first of ``keys``, taken for it before its start (:meth:`taken_at_start`).

        Raises:
            ExclusiveTimeout: ``patience`` (the saga's ``exclusive_timeout``) passed before
                every key was taken.
        """
        started = workflow.now()
        for key in taken or []:
            self.asked.append(key)
            self.granted.add(key)
        for key in keys[len(self.asked) :]:
            self.asked.append(key)
            answer = await self._ask(key)
            if answer.granted:
                self.granted.add(key)
                continue
            self.progress.waiting_for_key(key, answer.holder)
            while key not in self.granted:
                left = None if patience is None else patience - (workflow.now() - started)
                if left is not None and left <= timedelta(0):
                    raise ExclusiveTimeout(key, answer.holder, workflow.now() - started)
                wait = left if left is not None and left < ASK_AGAIN else ASK_AGAIN
                try:
                    await workflow.wait_condition(self._has(key), timeout=wait)
                except TimeoutError:
                    if key not in self.granted:
                        answer = await self._ask(key)  # still queued (or granted now)
                        if answer.granted:
                            self.granted.add(key)
            self.progress.key_taken(key)

    @staticmethod
    def taken_at_start(keys: list[str]) -> list[str]:
        """The first of ``keys`` that ``start_saga`` took for this run before starting it.

        A run that counts them asks for none of them; a reset, retried or continued run
        asks for each.
        """
        info = workflow.info()
        if KEY_EARLY_MEMO not in info.raw_memo:
            return []
        if not info.run_id == info.first_execution_run_id == info.original_execution_run_id:
            return []  # a reset, retried or continued run: its keys may have passed on since
        early = workflow.memo_value(KEY_EARLY_MEMO, type_hint=EarlyKeys)
        if info.workflow_start_time - early.since > EARLY_TRUST:
            return []  # started late: the key may have been freed (it asks, harmlessly)
        count = 0
        while count < min(len(keys), len(early.keys)) and early.keys[count] == keys[count]:
            count += 1
        return keys[:count]

    async def _ask(self, key: str) -> KeyAnswer:
        info = workflow.info()
        family = [w for w in (info.parent.workflow_id if info.parent else None,
                              info.root.workflow_id if info.root else None) if w]  # fmt: skip
        request = KeyRequest(key=key, saga_id=info.workflow_id, family=family)
        # A local activity: the shard answers on its own task queue, never waiting for a
        # workflow task slot that this saga's worker holds.
        answer: KeyAnswer = await workflow.execute_local_activity(
            KEY_ASK_ACTIVITY,
            request,
            result_type=KeyAnswer,
            start_to_close_timeout=timedelta(seconds=10),
            retry_policy=_QUICK,
            summary=f"take exclusive key {key}",
        )
        return answer

    def _has(self, key: str) -> Callable[[], bool]:
        return lambda: key in self.granted

    async def release(self) -> None:
        """Tell every key asked for that this saga is done with it (held or waited for)."""
        if not self.asked:
            return
        saga_id = workflow.info().workflow_id
        await workflow.execute_local_activity(
            KEY_RELEASE_ACTIVITY,
            releases(saga_id, self.asked),
            start_to_close_timeout=timedelta(seconds=10),
            retry_policy=_QUICK,
            summary=f"release exclusive keys {', '.join(self.asked)}",
        )
        self.asked.clear()
