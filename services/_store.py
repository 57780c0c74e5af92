"""A participant's SQLite store: effects by business key, idempotency records and an effect log."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

__all__ = ["Store"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    key TEXT PRIMARY KEY,           -- business key (order id, trip id)
    id TEXT NOT NULL,               -- the participant's own id for the effect
    status TEXT NOT NULL,           -- 'active' or 'undone'; an undone row with no payload is a
                                    -- tombstone: the undo came first, a late call is refused
    payload TEXT,
    updated_ns INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS idempotency (
    idem_key TEXT PRIMARY KEY,
    status INTEGER NOT NULL,
    body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS log (     -- one row per effect actually applied (replays are not logged)
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    op TEXT NOT NULL,
    key TEXT NOT NULL,
    idem_key TEXT NOT NULL,
    at_ns INTEGER NOT NULL,
    trace TEXT                      -- the caller's traceparent header, when it sent one
);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS outbox (   -- replies to send: kept until the engine took them
    correlation_id TEXT PRIMARY KEY,
    body TEXT NOT NULL,
    sent INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS received ( -- every call received, with the key it carried
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    op TEXT NOT NULL,
    key TEXT NOT NULL,
    idem_key TEXT NOT NULL
);
"""


class Store:
    """Thread-safe SQLite store; every operation runs under one lock (serializable)."""

    def __init__(self, path: Path) -> None:
        """Open (or create) the store at ``path``."""
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(log)")}
        if "trace" not in columns:  # a store written by an earlier version
            self._db.execute("ALTER TABLE log ADD COLUMN trace TEXT")
        self.lock = threading.RLock()

    def close(self) -> None:
        """Close the database."""
        with self.lock:
            self._db.close()

    def replay(self, idem_key: str) -> tuple[int, Any] | None:
        """Return the stored response of an idempotency key, if the call was seen."""
        row = self._db.execute(
            "SELECT status, body FROM idempotency WHERE idem_key = ?", (idem_key,)
        ).fetchone()
        return None if row is None else (int(row[0]), json.loads(row[1]))

    def remember(self, idem_key: str, status: int, body: Any) -> None:
        """Store the response of an idempotency key."""
        self._db.execute(
            "INSERT OR REPLACE INTO idempotency VALUES (?, ?, ?)",
            (idem_key, status, json.dumps(body)),
        )

    def record(self, key: str) -> dict[str, Any] | None:
        """Return the record of a business key."""
        row = self._db.execute(
            "SELECT key, id, status, payload FROM records WHERE key = ?", (key,)
        ).fetchone()
        return None if row is None else self._row(row)

    def put(self, key: str, effect_id: str, status: str, payload: Any) -> None:
        """Insert or update the record of a business key."""
        self._db.execute(
            "INSERT OR REPLACE INTO records VALUES (?, ?, ?, ?, ?)",
            (key, effect_id, status, json.dumps(payload), time.time_ns()),
        )

    def log(self, op: str, key: str, idem_key: str, trace: str | None = None) -> None:
        """Append an applied effect to the log."""
        self._db.execute(
            "INSERT INTO log (op, key, idem_key, at_ns, trace) VALUES (?, ?, ?, ?, ?)",
            (op, key, idem_key, time.time_ns(), trace),
        )

    def received(self, op: str, key: str, idem_key: str) -> None:
        """Note a call as it arrived (before any fault or replay), with its idempotency key."""
        with self.lock:
            self._db.execute(
                "INSERT INTO received (op, key, idem_key) VALUES (?, ?, ?)", (op, key, idem_key)
            )

    def outbox_add(self, correlation_id: str, body: bytes) -> None:
        """Keep a reply to send (in the same store as the effect: it survives a crash)."""
        with self.lock:
            self._db.execute(
                "INSERT OR IGNORE INTO outbox (correlation_id, body) VALUES (?, ?)",
                (correlation_id, body.decode()),
            )

    def outbox_done(self, correlation_id: str) -> None:
        """The engine answered the reply (taken, or refused for good)."""
        with self.lock:
            self._db.execute(
                "UPDATE outbox SET sent = 1 WHERE correlation_id = ?", (correlation_id,)
            )

    def outbox_pending(self) -> list[tuple[str, bytes]]:
        """Replies not sent yet (after a restart: resend them)."""
        with self.lock:
            rows = self._db.execute("SELECT correlation_id, body FROM outbox WHERE sent = 0")
            return [(r[0], r[1].encode()) for r in rows.fetchall()]

    def next_id(self, prefix: str) -> str:
        """Return a new sequential id such as ``res-000042``."""
        self._db.execute(
            "INSERT INTO counters VALUES ('id', 1) "
            "ON CONFLICT(name) DO UPDATE SET value = value + 1"
        )
        value = self._db.execute("SELECT value FROM counters WHERE name = 'id'").fetchone()[0]
        return f"{prefix}-{int(value):06d}"

    def counter(self, name: str) -> int:
        """Read a named counter (0 when unset)."""
        row = self._db.execute("SELECT value FROM counters WHERE name = ?", (name,)).fetchone()
        return 0 if row is None else int(row[0])

    def add(self, name: str, delta: int) -> None:
        """Add ``delta`` to a named counter."""
        self._db.execute(
            "INSERT INTO counters VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET value = value + ?",
            (name, delta, delta),
        )

    def dump(self) -> dict[str, Any]:
        """Everything in the store, for the admin endpoint and tests."""
        with self.lock:
            records = [
                self._row(r)
                for r in self._db.execute(
                    "SELECT key, id, status, payload FROM records ORDER BY key"
                )
            ]
            log = [
                {
                    "seq": r[0],
                    "op": r[1],
                    "key": r[2],
                    "idem_key": r[3],
                    "at_ns": r[4],
                    "trace": r[5],
                }
                for r in self._db.execute(
                    "SELECT seq, op, key, idem_key, at_ns, trace FROM log ORDER BY seq"
                )
            ]
            counters = dict(self._db.execute("SELECT name, value FROM counters").fetchall())
            received = [
                {"op": r[0], "key": r[1], "idem_key": r[2]}
                for r in self._db.execute("SELECT op, key, idem_key FROM received ORDER BY seq")
            ]
        return {"records": records, "log": log, "counters": counters, "received": received}

    @staticmethod
    def _row(row: tuple[Any, ...]) -> dict[str, Any]:
        return {"key": row[0], "id": row[1], "status": row[2], "payload": json.loads(row[3])}
