"""The embedded default database of a participant: SQLite, set up for concurrent commands."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

__all__ = ["postgres_url", "sqlite_engine"]


def sqlite_engine(path: str | Path, **options: Any) -> AsyncEngine:
    """An async SQLite engine on ``path`` that serializes writing transactions.

    Write-ahead log, ``synchronous=NORMAL``, a 30 s busy timeout, and ``BEGIN IMMEDIATE``: a
    transaction takes the write lock when it begins, so two commands with one key queue up
    instead of failing (SQLite's deferred transactions would deadlock and answer "database is
    locked"). At most 4 connections: SQLite has one writer at a time, and more connections
    would only poll its lock — under a burst, a transaction could lose that race for longer than
    the busy timeout ("database is locked"); past 4, commands queue in order for a connection.

    Args:
        path: The database file.
        **options: More :func:`~sqlalchemy.ext.asyncio.create_async_engine` options (for
            example ``pool_size``).
    """
    options = {"pool_size": 4, "max_overflow": 0, "pool_timeout": 120, **options}
    engine = create_async_engine(f"sqlite+aiosqlite:///{path}", **options)

    @event.listens_for(engine.sync_engine, "connect")
    def _connect(connection: Any, _: Any) -> None:
        connection.isolation_level = None  # the driver's own BEGIN off: ours below
        cursor = connection.cursor()
        for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "busy_timeout=30000"):
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def postgres_url(url: str) -> str:
    """``url`` for SQLAlchemy with asyncpg (``postgresql://`` -> ``postgresql+asyncpg://``)."""
    scheme, _, rest = url.partition("://")
    if scheme in ("postgres", "postgresql"):
        return f"postgresql+asyncpg://{rest}"
    return url
