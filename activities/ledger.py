"""A ledger participant run as activities: debit, credit, and reverse an entry.

Every entry is stored under the calling step's idempotency key (``<workflow id>:<step>``), so a
retried or duplicated call returns the first answer and applies nothing twice. A reversal of an
entry that never arrived leaves a tombstone under the forward key, so a late forward call is
refused — the same contract the demo's HTTP participants keep. The database is SQLite at
``$LEDGER_DB`` (default ``.sagaloom/ledger.sqlite3``); accounts open with 100.00 on first use,
accounts named ``frozen-…`` refuse credits.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
from pathlib import Path

from pydantic import BaseModel, Field
from temporalio import activity
from temporalio.exceptions import ApplicationError

from sagaloom.participants import idempotency_key

__all__ = ["Entry", "Move", "credit", "debit", "entries", "reverse"]

OPENING_CENTS = 10_000
_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    key TEXT PRIMARY KEY,       -- the step's idempotency key
    account TEXT NOT NULL,
    amount_cents INTEGER NOT NULL,  -- 0 with reversed=1 and no effect: a tombstone
    reversed INTEGER NOT NULL DEFAULT 0
);
"""


class Move(BaseModel):
    """Money moved on one account."""

    account: str = Field(min_length=1)
    amount_cents: int = Field(gt=0)


class Entry(BaseModel):
    """A ledger entry as stored (what a repeated call gets back)."""

    key: str
    account: str
    amount_cents: int
    balance_cents: int


def _path() -> Path:
    return Path(os.environ.get("LEDGER_DB", ".sagaloom/ledger.sqlite3"))


def _connect() -> sqlite3.Connection:
    path = _path()
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, isolation_level=None, timeout=30)
    db.execute("PRAGMA journal_mode=WAL")
    db.executescript(_SCHEMA)
    return db


def _balance(db: sqlite3.Connection, account: str) -> int:
    row = db.execute(
        "SELECT COALESCE(SUM(amount_cents), 0) FROM entries WHERE account = ?", (account,)
    ).fetchone()
    return OPENING_CENTS + int(row[0])


def _apply(key: str, account: str, amount: int) -> Entry:
    """Apply ``amount`` to ``account`` once under ``key`` (one transaction)."""
    with contextlib.closing(_connect()) as db:
        db.execute("BEGIN IMMEDIATE")
        try:
            row = db.execute(
                "SELECT account, amount_cents, reversed FROM entries WHERE key = ?", (key,)
            ).fetchone()
            if row is not None and row[2] and row[1] == 0:
                raise ApplicationError(
                    f"{key}: already reversed before it arrived",
                    type="Reversed",
                    non_retryable=True,
                )
            if row is None:
                if amount < 0 and _balance(db, account) + amount < 0:
                    raise ApplicationError(
                        f"insufficient funds on {account}",
                        type="InsufficientFunds",
                        non_retryable=True,
                    )
                if amount > 0 and account.startswith("frozen-"):
                    raise ApplicationError(
                        f"account {account} is frozen", type="AccountFrozen", non_retryable=True
                    )
                db.execute(
                    "INSERT INTO entries (key, account, amount_cents) VALUES (?, ?, ?)",
                    (key, account, amount),
                )
                row = (account, amount, 0)
            entry = Entry(key=key, account=row[0], amount_cents=row[1], balance_cents=0)
            entry.balance_cents = _balance(db, entry.account)
            db.execute("COMMIT")
            return entry
        except BaseException:
            db.execute("ROLLBACK")
            raise


def _reverse(forward: str, account: str) -> None:
    """Undo the entry under ``forward`` once; with none, leave a tombstone."""
    with contextlib.closing(_connect()) as db:
        db.execute("BEGIN IMMEDIATE")
        row = db.execute("SELECT amount_cents, reversed FROM entries WHERE key = ?", (forward,))
        found = row.fetchone()
        if found is None:
            db.execute(
                "INSERT INTO entries (key, account, amount_cents, reversed) VALUES (?, ?, 0, 1)",
                (forward, account),
            )
        elif not found[1]:
            db.execute(
                "UPDATE entries SET amount_cents = 0, reversed = 1 WHERE key = ?", (forward,)
            )
        db.execute("COMMIT")


@activity.defn(name="ledger.debit")
async def debit(move: Move) -> Entry:
    """Take ``move.amount_cents`` from the account (refused: ``InsufficientFunds``)."""
    return await asyncio.to_thread(_apply, idempotency_key(), move.account, -move.amount_cents)


@activity.defn(name="ledger.credit")
async def credit(move: Move) -> Entry:
    """Add ``move.amount_cents`` to the account (refused: ``AccountFrozen``)."""
    return await asyncio.to_thread(_apply, idempotency_key(), move.account, move.amount_cents)


@activity.defn(name="ledger.reverse")
async def reverse(move: Move) -> None:
    """Undo the step's own entry (the compensation of a debit or a credit)."""
    forward = idempotency_key().removesuffix(":compensate")
    await asyncio.to_thread(_reverse, forward, move.account)


def entries(prefix: str, path: Path | None = None) -> dict[str, int]:
    """Net amount by account of the entries whose key starts with ``prefix`` (for checks)."""
    with contextlib.closing(sqlite3.connect(path or _path())) as db:
        rows = db.execute(
            "SELECT account, SUM(amount_cents) FROM entries WHERE substr(key, 1, ?) = ? "
            "GROUP BY account",
            (len(prefix), prefix),
        ).fetchall()
    return {account: int(total) for account, total in rows}
