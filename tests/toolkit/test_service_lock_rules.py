"""Semantic locks' rules, each at its edge (docs/toolkit.md, "Semantic locks"), on SQLite and on
a real PostgreSQL: another saga's command on a held record waits (429 with ``Retry-After``,
nothing kept) — or, locked with ``wait=False``, is refused (409), and the refusal is kept and
replayed for its key; the saga that holds a record may lock it again (re-entrant); a step's
compensation frees what the step locked, in its own transaction."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI
from pydantic import BaseModel
from sqlalchemy import Column, Integer, MetaData, String, Table, func, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from sagaloom.service import CommandInfo, SagaService
from tests._postgres import Postgres, engine_of

pytestmark = pytest.mark.integration  # a real PostgreSQL per module


class Touch(BaseModel):
    record: str
    wait: bool = True


Shop = tuple[httpx.AsyncClient, AsyncEngine, Table, SagaService]


@pytest_asyncio.fixture(params=["sqlite", "postgresql"], loop_scope="session")
async def shop(
    request: pytest.FixtureRequest, tmp_path: Path, postgres: Postgres
) -> AsyncIterator[Shop]:
    engine = engine_of(request.param, tmp_path, postgres)
    metadata = MetaData()
    writes = Table(
        f"writes_{uuid.uuid4().hex[:6]}",
        metadata,
        Column("key", String(600), primary_key=True),
        Column("record", String(64)),
        Column("n", Integer),
    )
    service = SagaService(engine, metadata=metadata)
    await service.start()
    app = FastAPI()

    @app.post("/touch")
    @service.action
    async def touch(body: Touch, tx: AsyncSession, command: CommandInfo) -> dict[str, str]:
        await service.lock(tx, command, f"record:{body.record}", wait=body.wait)
        await tx.execute(insert(writes).values(key=command.key, record=body.record, n=1))
        return {"touched": body.record}

    @app.post("/touch/undo")
    @service.compensation
    async def untouch(body: Touch, tx: AsyncSession) -> dict[str, str]:
        return {"untouched": body.record}

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://shop") as http:
        yield http, engine, writes, service
    await engine.dispose()


async def written(engine: AsyncEngine, table: Table) -> int:
    async with engine.connect() as connection:
        return (await connection.execute(select(func.count()).select_from(table))).scalar_one()


async def post(http: httpx.AsyncClient, key: str, record: str, **body: object) -> httpx.Response:
    return await http.post(
        "/touch", headers={"Idempotency-Key": key}, json={"record": record, **body}
    )


async def test_a_held_record_makes_another_saga_wait_or_be_refused_and_its_holder_go_on(
    shop: Shop,
) -> None:
    http, engine, writes, _ = shop
    record = uuid.uuid4().hex[:6]
    first = await post(http, "SagaA-1:reserve", record)
    assert first.status_code == 200 and await written(engine, writes) == 1

    # the same saga, another of its steps: re-entrant, it goes on
    again = await post(http, "SagaA-1:reserve-more", record)
    assert again.status_code == 200 and await written(engine, writes) == 2

    # another saga, waiting: 429 with Retry-After, nothing kept (its retry runs the handler)
    busy = await post(http, "SagaB-1:reserve", record)
    assert busy.status_code == 429 and busy.headers["retry-after"] == "1"
    assert "held by saga SagaA-1" in busy.json()["error"]
    assert await written(engine, writes) == 2

    # another saga, not waiting: 409, kept under its key and replayed
    refused = await post(http, "SagaC-1:reserve", record, wait=False)
    assert refused.status_code == 409 and "held by saga SagaA-1" in refused.json()["error"]
    # once the holder has let go, the refused key still gets its refusal: it is final
    undone = await http.post(
        "/touch/undo", headers={"Idempotency-Key": "SagaA-1:reserve:compensate"},
        json={"record": record},
    )  # fmt: skip
    assert undone.status_code == 200
    replayed = await post(http, "SagaC-1:reserve", record, wait=False)
    assert replayed.status_code == 409 and replayed.content == refused.content
    assert await written(engine, writes) == 2

    # the undo of the step that took the lock freed it: the waiting saga now goes through
    free = await post(http, "SagaB-1:reserve", record)
    assert free.status_code == 200 and await written(engine, writes) == 3
