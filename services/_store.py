"""A demo participant's own tables: effects by business key, an effect log, counters, calls.

The toolkit (:mod:`sagaloom.service`) keeps the idempotency keys and answers; these are the
business tables its handlers write, in the transaction it opens. :class:`Books` writes them
(asynchronously, in that transaction); :class:`Store` reads them (synchronously, for the admin
endpoint and for tests that look inside a participant running in their own process).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Column,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    insert,
    select,
)
from sqlalchemy.dialects.sqlite import insert as upsert
from sqlalchemy.ext.asyncio import AsyncSession

__all__ = ["METADATA", "Books", "Store"]

METADATA = MetaData()
RECORDS = Table(
    "records",
    METADATA,
    Column("key", String(128), primary_key=True),  # business key (order id, trip id)
    Column("id", String(64), nullable=False),  # the participant's own id for the effect
    Column("status", String(16), nullable=False),  # 'active' or 'undone'
    Column("payload", Text),
    Column("updated_ns", Integer, nullable=False),
)
LOG = Table(  # one row per effect actually applied (replays are not logged)
    "log",
    METADATA,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("op", String(16), nullable=False),
    Column("key", String(128), nullable=False),
    Column("idem_key", String(512), nullable=False),
    Column("at_ns", Integer, nullable=False),
    Column("trace", String(128)),  # the caller's traceparent header, when it sent one
)
COUNTERS = Table(
    "counters",
    METADATA,
    Column("name", String(64), primary_key=True),
    Column("value", Integer, nullable=False),
)
RECEIVED = Table(  # every call received, with the key it carried (before any fault or replay)
    "received",
    METADATA,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("op", String(16), nullable=False),
    Column("key", String(128), nullable=False),
    Column("idem_key", String(512), nullable=False),
)


class Books:
    """Writes a demo participant's tables inside the toolkit's transaction ``tx``."""

    @staticmethod
    async def record(tx: AsyncSession, key: str) -> dict[str, Any] | None:
        """The record of a business key."""
        row = (await tx.execute(select(RECORDS).where(RECORDS.c.key == key))).first()
        return None if row is None else _record(row)

    @staticmethod
    async def put(tx: AsyncSession, key: str, effect_id: str, status: str, payload: Any) -> None:
        """Insert or update the record of a business key."""
        values = {"id": effect_id, "status": status, "payload": json.dumps(payload),
                  "updated_ns": time.time_ns()}  # fmt: skip
        statement = upsert(RECORDS).values(key=key, **values)
        await tx.execute(statement.on_conflict_do_update(index_elements=["key"], set_=values))

    @staticmethod
    async def log(tx: AsyncSession, op: str, key: str, idem_key: str, trace: str | None) -> None:
        """Append an applied effect to the log."""
        await tx.execute(insert(LOG).values(op=op, key=key, idem_key=idem_key,
                                            at_ns=time.time_ns(), trace=trace))  # fmt: skip

    @staticmethod
    async def received(tx: AsyncSession, op: str, key: str, idem_key: str) -> None:
        """Note a call as it arrived, with its idempotency key."""
        await tx.execute(insert(RECEIVED).values(op=op, key=key, idem_key=idem_key))

    @staticmethod
    async def received_all(tx: AsyncSession, calls: list[tuple[str, str, str]]) -> None:
        """Note calls as they arrived: (op, business key, idempotency key) each."""
        rows = [{"op": op, "key": key, "idem_key": idem} for op, key, idem in calls]
        await tx.execute(insert(RECEIVED), rows)

    @staticmethod
    async def add(tx: AsyncSession, name: str, delta: int) -> int:
        """Add ``delta`` to a named counter; return its new value."""
        statement = upsert(COUNTERS).values(name=name, value=delta)
        await tx.execute(statement.on_conflict_do_update(
            index_elements=["name"], set_={"value": COUNTERS.c.value + delta}))  # fmt: skip
        return await Books.counter(tx, name)

    @staticmethod
    async def counter(tx: AsyncSession, name: str) -> int:
        """Read a named counter (0 when unset)."""
        value = (await tx.execute(select(COUNTERS.c.value).where(COUNTERS.c.name == name))).scalar()
        return int(value or 0)

    @staticmethod
    async def next_id(tx: AsyncSession, prefix: str) -> str:
        """A new sequential id such as ``res-000042``."""
        return f"{prefix}-{await Books.add(tx, 'id', 1):06d}"


class Store:
    """Reads a participant's SQLite file (creating its tables where missing)."""

    def __init__(self, path: Path) -> None:
        """Open the store at ``path``."""
        self.path = path
        self._engine = create_engine(f"sqlite:///{path}")
        METADATA.create_all(self._engine)

    def close(self) -> None:
        """Release the connections."""
        self._engine.dispose()

    def record(self, key: str) -> dict[str, Any] | None:
        """The record of a business key."""
        with self._engine.connect() as db:
            row = db.execute(select(RECORDS).where(RECORDS.c.key == key)).first()
        return None if row is None else _record(row)

    def dump(self) -> dict[str, Any]:
        """Every record, the effect log, the counters and the calls received."""
        with self._engine.connect() as db:
            records = [_record(r) for r in db.execute(select(RECORDS).order_by(RECORDS.c.key))]
            log = [dict(r._mapping) for r in db.execute(select(LOG).order_by(LOG.c.seq))]
            counters = {r.name: r.value for r in db.execute(select(COUNTERS))}
            received = [
                {"op": r.op, "key": r.key, "idem_key": r.idem_key}
                for r in db.execute(select(RECEIVED).order_by(RECEIVED.c.seq))
            ]
        return {"records": records, "log": log, "counters": counters, "received": received}


def _record(row: Any) -> dict[str, Any]:
    payload = json.loads(row.payload) if row.payload is not None else None
    return {"key": row.key, "id": row.id, "status": row.status, "payload": payload}
