"""The inbox: each command applied once, in the service's own database transaction.

For a command with idempotency key ``K`` the inbox opens a transaction, inserts ``K``'s row
*first* (a primary key: a concurrent duplicate waits on it, then finds it taken), hands the
session to the handler, stores the handler's answer in that row and commits: the business write,
the key and the answer commit together or not at all. A repeated ``K`` gets the stored answer,
byte for byte, without the handler.

A compensation (key ``K:compensate``) whose forward call ``K`` never arrived writes a tombstone
under ``K`` and answers success without its handler; a forward call arriving after the tombstone
finds ``K`` taken by it and is refused (409) with no effect. A forward call that was refused has
nothing to undo either.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Column,
    DateTime,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    insert,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from sagaloom._wire._names import COMPENSATE_SUFFIX

__all__ = ["MAX_KEY_LENGTH", "Answer", "Inbox", "Refused", "forward_key", "key_problem"]

MAX_KEY_LENGTH = 512
"""Longest idempotency key the inbox takes (the engine's are ``<workflow id>:<step>``)."""
_UNDO = ":" + COMPENSATE_SUFFIX
_TOMBSTONE = "tombstone"
_ANSWER = "answer"
_PENDING = "pending"
_BUSY_RETRIES = 8


@dataclass(frozen=True)
class Answer:
    """What a command is answered: status, the headers that matter and the body's bytes."""

    status: int
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, data: Any, status: int = 200) -> Answer:
        """A JSON answer (``Content-Type: application/json``)."""
        body = json.dumps(data, separators=(",", ":"), default=str).encode()
        return cls(status, body, {"content-type": "application/json"})

    def data(self) -> Any:
        """The body as JSON (None when empty)."""
        return json.loads(self.body) if self.body else None

    @property
    def ok(self) -> bool:
        """A 2xx answer."""
        return 200 <= self.status < 300


class NotNow(Exception):
    """Raised in a handler: answer this, keep nothing (a retry runs the handler again)."""

    def answer(self) -> Answer:
        """What to answer."""
        raise NotImplementedError


class Refused(Exception):
    """Raise in a handler to refuse the command: its writes are rolled back, the refusal is kept.

    The engine takes a 4xx as the participant's "no": the step fails without being undone, and
    a retry of the same key gets the same refusal.
    """

    def __init__(self, reason: str, status: int = 422) -> None:
        if not 400 <= status < 500:
            raise ValueError(f"a refusal is a 4xx status, not {status}")
        super().__init__(reason)
        self.reason, self.status = reason, status

    def answer(self) -> Answer:
        """The stored answer: the status and ``{"error": reason}``."""
        return Answer.json({"error": self.reason}, self.status)


def key_problem(key: str | None) -> str | None:
    """Why ``key`` cannot be an idempotency key (None when it can)."""
    if not key:
        return "missing Idempotency-Key"
    if len(key) > MAX_KEY_LENGTH:
        return f"Idempotency-Key longer than {MAX_KEY_LENGTH} characters"
    if not key.isascii() or not key.isprintable() or key != key.strip():
        return "Idempotency-Key must be printable ASCII without surrounding spaces"
    return None


def forward_key(key: str) -> str | None:
    """The forward call's key of a compensation's key (``K:compensate`` -> ``K``), else None."""
    return key[: -len(_UNDO)] if key.endswith(_UNDO) and len(key) > len(_UNDO) else None


Handler = Callable[[AsyncSession], Awaitable[Answer]]
UndoHandler = Callable[[AsyncSession, Answer], Awaitable[Answer]]


class Inbox:
    """Applies each command once, in the same transaction as the handler's business writes."""

    def __init__(self, engine: AsyncEngine, *, table: str = "sagaloom_inbox") -> None:
        """Keep keys and answers in ``table`` of ``engine``'s database (the business one).

        Args:
            engine: The service's own database (SQLite through ``aiosqlite``, PostgreSQL
                through ``asyncpg``); see :func:`~sagaloom.service.sqlite_engine` for SQLite.
            table: The inbox table's name.
        """
        self.engine = engine
        self.metadata = MetaData()
        self.table = Table(
            table,
            self.metadata,
            Column("key", String(MAX_KEY_LENGTH), primary_key=True),
            Column("kind", String(16), nullable=False),
            Column("status", Integer, nullable=False),
            Column("headers", Text, nullable=False),
            Column("body", LargeBinary, nullable=False),
            Column("at", DateTime(timezone=True), nullable=False),
        )
        self.sessions = async_sessionmaker(engine, expire_on_commit=False)

    async def create_tables(self) -> None:
        """Create the inbox table where missing."""
        async with self.engine.begin() as connection:
            await connection.run_sync(self.metadata.create_all)

    async def stored(self, key: str) -> tuple[str, Answer] | None:
        """The row kept for ``key``: its kind (``answer``/``tombstone``) and answer."""
        async with self.sessions() as session:
            return await self._read(session, key)

    async def forward(self, key: str, handler: Handler) -> Answer:
        """Apply a forward command once per ``key``; a repeat gets the stored answer.

        Raises:
            Exception: whatever ``handler`` raised other than :class:`Refused`; nothing of
                it is kept, so a retry runs it again.
        """
        return await self._busy_safe(lambda: self._forward(key, handler))

    async def compensate(self, key: str, handler: UndoHandler, *, undoes: str) -> Answer:
        """Apply a compensation once per ``key``; it undoes the forward call ``undoes``.

        The handler gets the forward call's stored answer. With no forward call yet, a tombstone
        is written under ``undoes`` and the answer is a success without the handler; a forward
        call that was refused has nothing to undo.
        """
        return await self._busy_safe(lambda: self._compensate(key, handler, undoes))

    async def _forward(self, key: str, handler: Handler) -> Answer:
        async with self.sessions() as session:
            try:
                async with session.begin():
                    await self._claim(session, key)
                    answer = await handler(session)
                    if answer.status >= 500:  # a fault: nothing kept, a retry runs it again
                        raise _Rollback(answer)
                    await self._keep(session, key, answer)
                return answer
            except IntegrityError as err:
                taken = err  # by an earlier call, a concurrent one now committed, a tombstone
            except _Rollback as fault:
                return fault.answer
            except NotNow as later:
                return later.answer()
            except Refused as refusal:
                return await self._refuse(key, refusal)
        return await self._replay(key, taken)

    async def _compensate(self, key: str, handler: UndoHandler, undoes: str) -> Answer:
        async with self.sessions() as session:
            try:
                async with session.begin():
                    await self._claim(session, key)
                    done = await self._read(session, undoes, lock=True)
                    if done is None:  # never arrived: a tombstone refuses it should it come
                        await session.execute(insert(self.table).values(**_tombstone(undoes)))
                        answer = Answer.json({"undone": False, "reason": "never arrived"})
                    elif done[0] != _ANSWER or not done[1].ok:
                        answer = Answer.json({"undone": False, "reason": "nothing was done"})
                    else:
                        answer = await handler(session, done[1])
                        if answer.status >= 500:
                            raise _Rollback(answer)
                    await self._keep(session, key, answer)
                return answer
            except IntegrityError as err:
                taken = err  # this key taken, or the forward call committed meanwhile
            except _Rollback as fault:
                return fault.answer
            except NotNow as later:
                return later.answer()
            except Refused as refusal:
                return await self._refuse(key, refusal)
        replayed = await self.stored(key)
        if replayed is not None:
            return replayed[1]
        if await self.stored(undoes) is not None:  # lost the race with its forward call
            return await self._compensate(key, handler, undoes)
        raise taken  # the handler's own constraint

    async def _claim(self, session: AsyncSession, key: str) -> None:
        """Insert ``key``'s row first: a duplicate waits on it, then fails (IntegrityError)."""
        await session.execute(insert(self.table).values(**_row(key, _PENDING, Answer(0))))

    async def _keep(self, session: AsyncSession, key: str, answer: Answer) -> None:
        values = _row(key, _ANSWER, answer)
        del values["key"]
        await session.execute(update(self.table).where(self.table.c.key == key).values(**values))

    async def _refuse(self, key: str, refusal: Refused) -> Answer:
        """Keep a refusal (the handler's writes rolled back); a repeat gets it again."""
        answer = refusal.answer()
        async with self.sessions() as session:
            try:
                async with session.begin():
                    await session.execute(insert(self.table).values(**_row(key, _ANSWER, answer)))
                return answer
            except IntegrityError as err:
                return await self._replay(key, err)

    async def _replay(self, key: str, taken: IntegrityError) -> Answer:
        """The answer stored for ``key``; none stored: ``taken`` was the handler's own."""
        stored = await self.stored(key)
        if stored is None:
            raise taken
        return stored[1]

    async def _read(
        self, session: AsyncSession, key: str, *, lock: bool = False
    ) -> tuple[str, Answer] | None:
        query = select(self.table).where(self.table.c.key == key)
        if lock and session.bind.dialect.name == "postgresql":
            query = query.with_for_update()
        row = (await session.execute(query)).first()
        if row is None:
            return None
        headers = json.loads(row.headers)
        return row.kind, Answer(row.status, bytes(row.body), headers)

    async def _busy_safe(self, work: Callable[[], Awaitable[Answer]]) -> Answer:
        """Run ``work``, again when SQLite says the database is locked (a writer held it)."""
        for attempt in range(_BUSY_RETRIES):
            try:
                return await work()
            except OperationalError as err:
                if "locked" not in str(err) or attempt == _BUSY_RETRIES - 1:
                    raise
                await asyncio.sleep(0.05 * (attempt + 1))
        raise AssertionError("unreachable")


class _Rollback(Exception):
    """A 5xx answer: roll the transaction back and answer it, keeping nothing."""

    def __init__(self, answer: Answer) -> None:
        super().__init__(answer.status)
        self.answer = answer


def _tombstone(key: str) -> dict[str, Any]:
    """The tombstone row of forward key ``key``: a late forward call is refused."""
    return _row(key, _TOMBSTONE, Answer.json({"error": "compensated before it arrived"}, 409))


def _row(key: str, kind: str, answer: Answer) -> dict[str, Any]:
    return {
        "key": key,
        "kind": kind,
        "status": answer.status,
        "headers": json.dumps(dict(answer.headers)),
        "body": answer.body,
        "at": datetime.now(UTC),
    }
