"""Semantic locks: the records a saga's step touched stay pending for that saga until it ends.

A saga has no isolation: its steps commit one by one, so another saga can read the first one's
half-done work (a debit that will be refunded, a reservation that will be released) and decide
on it. A handler that marks what it touches (``await service.lock(tx, command, "account:42")``,
in its own transaction) makes another saga's command on the same record wait (429, retried by
the engine under the step's policy) or refused (409), until the owner's step is compensated (the
toolkit releases it in the compensation's transaction) or the owning saga ends: the engine tells
the participant (``Saga(notify_participants=True)``: ``POST /sagaloom/saga-ended``, retried while
the participant is down), and :meth:`Locks.release_saga` frees everything the saga held.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Column, DateTime, MetaData, String, Table, delete, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from sagaloom._wire._names import saga_of
from sagaloom.service._handlers import CommandInfo
from sagaloom.service._inbox import Answer, NotNow, Refused

__all__ = ["Busy", "Locks"]

RETRY_AFTER = 1
"""Seconds a command on a held record is told to wait before it is sent again."""


class Busy(NotNow):
    """A record another saga holds: the command waits.

    Answered 429 with ``Retry-After`` (the engine retries it under the step's policy); nothing
    of the handler is kept.
    """

    def __init__(self, resource: str, holder: str) -> None:
        super().__init__(f"{resource} is held by saga {holder}")
        self.resource, self.holder = resource, holder

    def answer(self) -> Answer:
        """429 with ``Retry-After``."""
        busy = Answer.json({"error": f"{self}: retry later"}, 429)
        return Answer(busy.status, busy.body, {**busy.headers, "retry-after": str(RETRY_AFTER)})


class Locks:
    """Which saga holds which record, in the service's own database."""

    def __init__(self, engine: AsyncEngine, *, table: str = "sagaloom_locks") -> None:
        """Keep the locks in ``table`` of ``engine``'s database (the business one)."""
        self.engine = engine
        self.metadata = MetaData()
        self.table = Table(
            table,
            self.metadata,
            Column("resource", String(256), primary_key=True),
            Column("saga_id", String(512), nullable=False, index=True),
            Column("step_key", String(600), nullable=False, index=True),
            Column("at", DateTime(timezone=True), nullable=False),
        )

    async def create_tables(self) -> None:
        """Create the locks table where missing."""
        async with self.engine.begin() as connection:
            await connection.run_sync(self.metadata.create_all)

    async def take(
        self, tx: AsyncSession, command: CommandInfo, *resources: str, wait: bool = True
    ) -> None:
        """Mark ``resources`` pending for ``command``'s saga, in ``tx`` (its transaction).

        Taken in sorted order; a record the saga already holds is fine (re-entrant).

        Raises:
            Busy: another saga holds one of them and ``wait``: 429, retried by the engine.
            Refused: another saga holds one of them and not ``wait``: 409, kept.
        """
        saga = saga_of(command.key)
        for resource in sorted(set(resources)):
            query = select(self.table.c.saga_id).where(self.table.c.resource == resource)
            if tx.bind.dialect.name == "postgresql":
                query = query.with_for_update()
            holder = (await tx.execute(query)).scalar_one_or_none()
            if holder == saga:
                continue
            if holder is not None:
                raise _held(resource, holder, wait)
            try:
                async with tx.begin_nested():  # a concurrent taker committed first: busy
                    await tx.execute(insert(self.table).values(
                        resource=resource, saga_id=saga, step_key=command.key,
                        at=datetime.now(UTC)))  # fmt: skip
            except IntegrityError:
                raise _held(resource, "another saga", wait) from None

    async def release_step(self, tx: AsyncSession, forward_key: str) -> int:
        """Free what the step with ``forward_key`` took (its compensation ran); how many."""
        done = await tx.execute(delete(self.table).where(self.table.c.step_key == forward_key))
        return int(getattr(done, "rowcount", 0) or 0)

    async def release_saga(self, tx: AsyncSession, saga_id: str) -> int:
        """Free everything saga ``saga_id`` holds (it ended); how many."""
        done = await tx.execute(delete(self.table).where(self.table.c.saga_id == saga_id))
        return int(getattr(done, "rowcount", 0) or 0)

    async def held(self) -> dict[str, str]:
        """Every record held, and by which saga."""
        async with self.engine.connect() as connection:
            rows = await connection.execute(select(self.table.c.resource, self.table.c.saga_id))
            return {r.resource: r.saga_id for r in rows}


def _held(resource: str, holder: str, wait: bool) -> Exception:
    return Busy(resource, holder) if wait else Refused(f"{resource} is held by saga {holder}", 409)
