"""The outbox: replies written in the business transaction, delivered by a relay afterwards.

A reply is a row of the outbox table, added with the transaction that did the work, so it exists
exactly when the work committed: nothing is sent for a rolled-back transaction, and a process
killed between the commit and the send sends it after its restart. The :class:`Relay` delivers
the rows in order of creation, to the workers' reply endpoint (``POST <url>``, any worker of the
app) or to the broker's reply subject with a stable ``Nats-Msg-Id``; a 4xx from the endpoint is
final (a forged, late or duplicate reply: retrying cannot help), a 5xx or a network error is
retried with back-off.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    insert,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from sagaloom._wire._protocol import MSG_ID

__all__ = ["Outbox", "Relay", "ReplyRow"]

log = logging.getLogger("sagaloom.service")

NatsPublish = Callable[[str, bytes, dict[str, str]], Awaitable[None]]
"""Publishes one message (subject, payload, headers): for example a JetStream ``publish``."""


@dataclass(frozen=True)
class ReplyRow:
    """One reply waiting in the outbox."""

    id: int
    correlation_id: str
    payload: bytes
    """The reply's JSON: correlation id, token, ok, data, reason."""
    subject: str | None
    """The broker subject to publish to; None: the workers' HTTP reply endpoint."""
    msg_id: str
    attempts: int


class Outbox:
    """Replies kept in the service's own database until the relay has delivered them."""

    def __init__(self, engine: AsyncEngine, *, table: str = "sagaloom_outbox") -> None:
        """Keep replies in ``table`` of ``engine``'s database (the business one)."""
        self.engine = engine
        self.metadata = MetaData()
        self.table = Table(
            table,
            self.metadata,
            Column("id", Integer, primary_key=True, autoincrement=True),
            Column("correlation_id", String(512), nullable=False),
            Column("payload", Text, nullable=False),
            Column("subject", String(512), nullable=True),
            Column("msg_id", String(600), nullable=False),
            Column("attempts", Integer, nullable=False, default=0),
            Column("next_at", Float, nullable=False, default=0.0),
            Column("done", Boolean, nullable=False, default=False),
            Column("outcome", Text, nullable=False, default=""),
            Column("at", DateTime(timezone=True), nullable=False),
        )
        self.sessions = async_sessionmaker(engine, expire_on_commit=False)
        self.added = asyncio.Event()
        """Set when a reply was added (the relay wakes up; it also polls)."""

    async def create_tables(self) -> None:
        """Create the outbox table where missing."""
        async with self.engine.begin() as connection:
            await connection.run_sync(self.metadata.create_all)

    async def add(
        self,
        tx: AsyncSession,
        correlation_id: str,
        token: str | None,
        *,
        ok: bool = True,
        data: Any = None,
        reason: str = "",
        subject: str | None = None,
        msg_id: str | None = None,
    ) -> None:
        """Add a reply in ``tx``, the transaction of the work it reports.

        Args:
            tx: The business transaction: the reply exists if and only if it commits.
            correlation_id: The command's ``Sagaloom-Correlation-Id``.
            token: The command's ``Sagaloom-Reply-Token``.
            ok: Whether the work was done (False: the participant says no, with ``reason``).
            data: The reply's data (JSON): the step's output.
            reason: Why not, when ``ok`` is False.
            subject: Publish to this broker subject (the command's ``Sagaloom-Reply-To``)
                instead of the HTTP reply endpoint.
            msg_id: The reply's ``Nats-Msg-Id`` (by default ``reply-<correlation id>``).
        """
        payload = {"correlation_id": correlation_id, "token": token or "", "ok": ok,
                   "data": data if data is not None else {}, "reason": reason}  # fmt: skip
        await tx.execute(
            insert(self.table).values(
                correlation_id=correlation_id,
                payload=json.dumps(payload, default=str),
                subject=subject,
                msg_id=msg_id or f"reply-{correlation_id}",
                attempts=0,
                next_at=0.0,
                done=False,
                outcome="",
                at=datetime.now(UTC),
            )
        )
        self.added.set()

    async def due(self, limit: int = 50, *, all_pending: bool = False) -> list[ReplyRow]:
        """Replies not delivered yet whose time has come (or all of them), oldest first."""
        until = float("inf") if all_pending else time.time()
        query = (
            select(self.table)
            .where(self.table.c.done.is_(False), self.table.c.next_at <= until)
            .order_by(self.table.c.id)
            .limit(limit)
        )
        async with self.sessions() as session:
            rows = (await session.execute(query)).all()
        return [
            ReplyRow(r.id, r.correlation_id, r.payload.encode(), r.subject, r.msg_id, r.attempts)
            for r in rows
        ]

    async def pending(self) -> int:
        """How many replies are not delivered yet."""
        query = select(self.table.c.id).where(self.table.c.done.is_(False))
        async with self.sessions() as session:
            return len((await session.execute(query)).all())

    async def settle(self, row: ReplyRow, *, done: bool, outcome: str) -> None:
        """Mark ``row`` delivered (or refused for good), or due again after a back-off."""
        values: dict[str, Any] = {"outcome": outcome[:500], "attempts": row.attempts + 1}
        if done:
            values["done"] = True
        else:
            values["next_at"] = time.time() + min(60.0, 0.5 * 2 ** min(row.attempts, 7))
        async with self.sessions() as session, session.begin():
            await session.execute(
                update(self.table).where(self.table.c.id == row.id).values(**values)
            )


class Relay:
    """Delivers the outbox's replies: to the workers' reply endpoints, or to the broker."""

    def __init__(
        self,
        outbox: Outbox,
        *,
        reply_urls: Sequence[str] = (),
        publish: NatsPublish | None = None,
        poll_seconds: float = 1.0,
        token: str | None = None,
    ) -> None:
        """Deliver ``outbox``'s replies.

        Args:
            outbox: Where the replies wait.
            reply_urls: The workers' reply endpoints (``http://host:port/replies``); any one
                takes any reply, so they are tried in turn.
            publish: Publishes a broker reply (for replies that name a subject).
            poll_seconds: How often to look for due replies besides when one is added.
            token: Bearer token for the reply endpoints, if they want one.
        """
        self.outbox = outbox
        self.reply_urls = list(reply_urls)
        self.publish = publish
        self.poll_seconds = poll_seconds
        self._headers = {"Content-Type": "application/json"}
        if token:
            self._headers["Authorization"] = f"Bearer {token}"
        self._task: asyncio.Task[None] | None = None
        self._http = httpx.AsyncClient(timeout=httpx.Timeout(10.0, connect=3.0))

    async def deliver_due(self, *, all_pending: bool = False) -> int:
        """Deliver every reply that is due now; return how many were settled for good.

        Args:
            all_pending: Also those still backing off (at start: a restart sends at once).
        """
        settled = 0
        for row in await self.outbox.due(all_pending=all_pending):
            done, outcome = await self._deliver(row)
            await self.outbox.settle(row, done=done, outcome=outcome)
            if done:
                settled += 1
            else:
                log.info("reply %s not delivered (%s): again later", row.correlation_id, outcome)
        return settled

    async def _deliver(self, row: ReplyRow) -> tuple[bool, str]:
        """(final, what happened) for one attempt at ``row``."""
        if row.subject is not None:
            if self.publish is None:
                return False, "no broker connection to publish the reply"
            try:
                await self.publish(row.subject, row.payload, {MSG_ID: row.msg_id})
            except Exception as err:  # the broker is down or slow: again later
                return False, f"publish failed: {type(err).__name__}: {err}"[:300]
            return True, "published"
        if not self.reply_urls:
            return False, "no reply URL configured"
        problem = "no reply endpoint answered"
        for url in self.reply_urls:
            try:
                response = await self._http.post(url, content=row.payload, headers=self._headers)
            except httpx.HTTPError as err:
                problem = f"{url}: {type(err).__name__}"
                continue
            if response.is_success:
                return True, f"HTTP {response.status_code}"
            if 400 <= response.status_code < 500:  # refused for good: late, forged, duplicate
                log.warning(
                    "reply %s refused by %s: HTTP %d %s",
                    row.correlation_id,
                    url,
                    response.status_code,
                    response.text[:200],
                )
                return True, f"refused: HTTP {response.status_code} {response.text[:200]}"
            problem = f"{url}: HTTP {response.status_code}"
        return False, problem

    async def run(self) -> None:
        """Deliver replies until cancelled: when one is added, and every ``poll_seconds``."""
        first = True
        while True:
            self.outbox.added.clear()  # a reply added from here on wakes the wait below
            try:
                await self.deliver_due(all_pending=first)
                first = False
            except Exception as err:  # the database is busy or gone: try again shortly
                log.warning("reply relay: %s: %s", type(err).__name__, err)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.outbox.added.wait(), self.poll_seconds)

    def start(self) -> None:
        """Run :meth:`run` in the background."""
        if self._task is None:
            self._task = asyncio.create_task(self.run(), name="sagaloom-reply-relay")

    async def aclose(self) -> None:
        """Stop delivering (what is left is delivered after the next start)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._http.aclose()
