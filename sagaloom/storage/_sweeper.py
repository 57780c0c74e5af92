"""The sweeper: removes stored payloads once no history refers to them.

A stored payload lives as long as its saga's history: while the run is open and, once closed,
for the namespace's retention. When Temporal no longer knows the workflow id (retention passed,
or the run was deleted) and the object is older than the grace, it is removed. Every worker
process sweeps (deletes are conditional and idempotent, so several sweepers agree).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from sagaloom.storage._naming import NO_WORKFLOW, StoredObject, Sweepable
from sagaloom.storage._nats_store import REUSE_WITHIN

__all__ = ["DEFAULT_GRACE", "PayloadSweeper", "Sweep"]

log = logging.getLogger("sagaloom.storage")

DEFAULT_GRACE = 2 * REUSE_WITHIN
"""Objects younger than this are never removed (a saga may be about to start with one)."""


@dataclass(frozen=True)
class Sweep:
    """What one sweep found and did."""

    objects: int
    """Objects in the stores."""
    sagas_checked: int
    """Sagas (workflow ids) of this namespace asked about."""
    removed: int
    """Objects removed: their saga is gone and they were older than the grace."""


class PayloadSweeper:
    """Removes the stored payloads (and broker bodies) of sagas Temporal no longer knows."""

    def __init__(
        self, stores: Sequence[Sweepable], client: Client, *, grace: timedelta = DEFAULT_GRACE
    ) -> None:
        """Sweep ``stores`` for the sagas of ``client``'s namespace."""
        self.stores, self.client, self.grace = list(stores), client, grace

    async def _known(self, workflow_id: str) -> bool:
        try:
            await self.client.get_workflow_handle(workflow_id).describe()
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND:
                return False
            raise
        return True

    async def sweep(self) -> Sweep:
        """One pass over every store."""
        cutoff = datetime.now(UTC) - self.grace
        listed: list[tuple[Sweepable, list[StoredObject]]] = [
            (store, await store.objects()) for store in self.stores
        ]
        mine: dict[str, list[tuple[Sweepable, StoredObject]]] = {}
        for store, objects in listed:
            for obj in objects:
                old = obj.written is not None and obj.written <= cutoff
                if (
                    old
                    and obj.namespace == self.client.namespace
                    and obj.workflow_id != NO_WORKFLOW
                ):
                    mine.setdefault(obj.workflow_id, []).append((store, obj))
        removed = 0
        for workflow_id, held in mine.items():
            if await self._known(workflow_id):
                continue
            for store, obj in held:
                removed += await store.delete_unless_rewritten(obj)
        if removed:
            log.info("payload sweep: removed %d objects of sagas past retention", removed)
        return Sweep(sum(len(o) for _, o in listed), len(mine), removed)

    async def run(self, every: timedelta, stop: asyncio.Event) -> None:
        """Sweep every ``every`` until ``stop`` is set; a failed sweep is logged and retried."""
        while not stop.is_set():
            try:
                await self.sweep()
            except Exception as err:  # the store or Temporal down: next time
                log.warning("payload sweep failed: %s: %s", type(err).__name__, err)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), every.total_seconds())
