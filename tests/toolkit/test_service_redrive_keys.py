"""Idempotency across a redrive, on the toolkit's own database (SQLite and a real PostgreSQL).

The protocol's rule (docs/participants.md, "Redrives and keys"): a redrive of a step whose
first run may have taken effect (5xx, timeout, unknown outcome) reuses its key, so the toolkit
applies it at most once; a redrive of a step the participant refused — a refusal kept under
the key — goes under a new key, ``<step>~r<n>``, and the toolkit never applies both. Each
sequence below is what the engine sends in that case; the database says how many effects.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI
from pydantic import BaseModel, Field
from sqlalchemy import Column, Integer, MetaData, String, Table, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from sagaloom.service import CommandInfo, Refused, SagaService
from tests._postgres import Postgres, engine_of

pytestmark = pytest.mark.integration  # a real PostgreSQL per module


class Charge(BaseModel):
    order_id: str
    cents: int = Field(gt=0)


Shop = tuple[httpx.AsyncClient, AsyncEngine, Table, dict[str, str]]


@pytest_asyncio.fixture(params=["sqlite", "postgresql"], loop_scope="session")
async def shop(
    request: pytest.FixtureRequest, tmp_path: Path, postgres: Postgres
) -> AsyncIterator[Shop]:
    engine = engine_of(request.param, tmp_path, postgres)
    metadata = MetaData()
    charges = Table(
        f"charges_{uuid.uuid4().hex[:6]}",
        metadata,
        Column("key", String(600), primary_key=True),
        Column("order_id", String(64)),
        Column("cents", Integer),
        Column("refunded", Integer, default=0),
    )
    mode = {"deploy": "bad"}  # the participant's deploy: bad (answers 500 / refuses) or fixed
    service = SagaService(engine, metadata=metadata)
    await service.start()
    app = FastAPI()

    @app.post("/charges")
    @service.action(steps={"charge-payment"})
    async def charge(body: Charge, tx: AsyncSession, command: CommandInfo) -> dict[str, str]:
        if mode["deploy"] == "500":
            raise RuntimeError("bad deploy")  # a 500: rolled back, key and all
        if mode["deploy"] == "refuse" or body.cents > 10_000:
            raise Refused("card declined by a bad deploy", status=400)  # kept under the key
        await tx.execute(insert(charges).values(key=command.key, order_id=body.order_id,
                                                cents=body.cents))  # fmt: skip
        return {"id": f"ch-{body.order_id}"}

    @app.post("/charges/refund")
    @service.compensation
    async def refund(body: Charge, tx: AsyncSession, command: CommandInfo) -> dict[str, str]:
        done = update(charges).where(charges.c.order_id == body.order_id)
        await tx.execute(done.values(refunded=1))
        return {"refunded": body.order_id}

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://shop") as http:
        yield http, engine, charges, mode
    await engine.dispose()


async def effects(engine: AsyncEngine, charges: Table, order: str) -> int:
    async with engine.connect() as connection:
        query = select(func.count()).select_from(charges).where(charges.c.order_id == order)
        return (await connection.execute(query)).scalar_one()


async def send(http: httpx.AsyncClient, key: str, body: dict[str, object]) -> httpx.Response:
    return await http.post("/charges", headers={"Idempotency-Key": key}, json=body)


async def test_a_redrive_after_500s_reuses_the_key_and_applies_once(shop: Shop) -> None:
    http, engine, charges, mode = shop
    order = uuid.uuid4().hex[:8]
    key = f"GuardedOrderSaga-{order}:charge-payment"
    body = {"order_id": order, "cents": 1200}
    mode["deploy"] = "500"
    for _ in range(3):  # the step's attempts: each rolled back
        assert (await send(http, key, body)).status_code == 500
    assert await effects(engine, charges, order) == 0
    mode["deploy"] = "fixed"
    first = await send(http, key, body)  # the redrive: the same key
    again = await send(http, key, body)  # and a retry of it (its answer lost, say)
    assert first.status_code == 200 and again.content == first.content
    assert await effects(engine, charges, order) == 1


async def test_a_redrive_after_a_commit_whose_answer_was_lost_is_answered_from_the_key(
    shop: Shop,
) -> None:
    http, engine, charges, mode = shop
    order = uuid.uuid4().hex[:8]
    key = f"GuardedOrderSaga-{order}:charge-payment"
    mode["deploy"] = "fixed"
    body = {"order_id": order, "cents": 1200}
    assert (await send(http, key, body)).status_code == 200  # applied; the engine never heard
    patched = {"order_id": order, "cents": 1500}  # redriven with a request patch: same key
    answer = await send(http, key, patched)
    assert answer.status_code == 200 and answer.json() == {"id": f"ch-{order}"}
    assert await effects(engine, charges, order) == 1  # never applied twice


async def test_a_refusal_kept_under_its_key_and_the_redrive_under_a_new_key_never_both(
    shop: Shop,
) -> None:
    http, engine, charges, mode = shop
    order = uuid.uuid4().hex[:8]
    saga = f"GuardedOrderSaga-{order}"
    body = {"order_id": order, "cents": 1200}
    mode["deploy"] = "refuse"
    refused = await send(http, f"{saga}:charge-payment", body)
    assert refused.status_code == 400
    mode["deploy"] = "fixed"
    # under the old key the refusal stands (a redrive there would be refused forever)
    again = await send(http, f"{saga}:charge-payment", body)
    assert again.status_code == 400 and again.content == refused.content
    # the redrive goes under the step's next key: applied once, and replayed after
    applied = await send(http, f"{saga}:charge-payment~r1", body)
    replayed = await send(http, f"{saga}:charge-payment~r1", body)
    assert applied.status_code == 200 and replayed.content == applied.content
    assert await effects(engine, charges, order) == 1
    # the undo of the redriven step follows its key: it refunds the one charge, once
    undo = {"Idempotency-Key": f"{saga}:charge-payment~r1:compensate"}
    for _ in range(2):
        refund = await http.post("/charges/refund", headers=undo, json=body)
        assert refund.status_code == 200
    async with engine.connect() as connection:
        rows = (await connection.execute(select(charges.c.refunded).where(
            charges.c.order_id == order))).all()  # fmt: skip
    assert [r.refunded for r in rows] == [1]
