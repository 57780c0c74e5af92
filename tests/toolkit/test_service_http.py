"""The participant toolkit over HTTP: a FastAPI service built on it, checked from outside.

Bad commands are refused with a one-line 4xx and leave nothing behind (SQLite and PostgreSQL);
then the order saga runs on a real worker against the toolkit's example payment service
(``services/payment_service.py``, served by uvicorn in its own process), and the service's own
database shows each effect once and every compensation applied.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI
from pydantic import BaseModel, Field
from sqlalchemy import Column, Integer, MetaData, String, Table, func, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from temporalio.worker import Worker

from sagaloom import SagaStatus
from sagaloom.client import outcome, start_saga
from sagaloom.participants import Breakers
from sagaloom.service import CommandInfo, SagaService, sqlite_engine
from sagaloom.worker import SagaloomPlugin
from tests._helpers import Stack, serve_asgi
from tests._postgres import Postgres, engine_of
from workflows.order import ORDER, OrderSaga

pytestmark = pytest.mark.integration  # a real PostgreSQL (and processes) per module

KEY = {"Idempotency-Key": "OrderSaga-o-1:charge-payment"}


class Charge(BaseModel):
    order_id: str = Field(min_length=1)
    amount_cents: int = Field(gt=0)


@pytest_asyncio.fixture(params=["sqlite", "postgresql"], loop_scope="session")
async def shop(
    request: pytest.FixtureRequest, tmp_path: Path, postgres: Postgres
) -> AsyncIterator[tuple[httpx.AsyncClient, AsyncEngine, Table]]:
    engine = engine_of(request.param, tmp_path, postgres)
    metadata = MetaData()
    charges = Table(
        f"charges_{uuid.uuid4().hex[:6]}",
        metadata,
        Column("order_id", String(64), primary_key=True),
        Column("cents", Integer),
    )
    service = SagaService(engine, metadata=metadata)
    await service.start()
    app = FastAPI()
    seen: list[CommandInfo] = []

    @app.post("/charges")
    @service.action
    async def charge(body: Charge, tx: AsyncSession, command: CommandInfo) -> dict[str, str]:
        seen.append(command)
        await tx.execute(insert(charges).values(order_id=body.order_id, cents=body.amount_cents))
        return {"id": f"ch-{body.order_id}"}

    @app.post("/charges/only")
    @service.action(steps={"charge-payment"})
    async def only(body: Charge, tx: AsyncSession) -> dict[str, str]:
        await tx.execute(insert(charges).values(order_id=body.order_id, cents=body.amount_cents))
        return {"id": f"ch-{body.order_id}"}

    @app.post("/charges/refund")
    @service.compensation
    async def refund(body: dict[str, Any], tx: AsyncSession) -> dict[str, bool]:
        return {"refunded": True}

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://shop") as http:
        yield http, engine, charges
    await engine.dispose()


async def count(engine: AsyncEngine, table: Table) -> int:
    async with engine.connect() as connection:
        return (await connection.execute(select(func.count()).select_from(table))).scalar_one()


@pytest.mark.parametrize(
    ("headers", "body", "status", "reason"),
    [
        ({}, {"order_id": "o", "amount_cents": 1}, 400, "missing Idempotency-Key"),
        ({"Idempotency-Key": "k" * 513}, {"order_id": "o", "amount_cents": 1}, 400, "longer"),
        ({"Idempotency-Key": "a:b\x7f"}, {"order_id": "o", "amount_cents": 1}, 400, "ASCII"),
        ({"Idempotency-Key": "S-1:charge:compensate"}, {"order_id": "o", "amount_cents": 1},
         400, "cannot be an undo's"),
        (KEY, {"order_id": "o", "amount_cents": -5}, 422, "body.amount_cents: Input should be"),
        (KEY, {"order_id": "o"}, 422, "body.amount_cents: Field required"),
        (KEY, "[1, 2", 400, "not JSON"),
        (KEY, "[" * 40 + "]" * 40, 400, "nested deeper than 32"),
        (KEY, "x" * (1024 * 1024 + 1), 413, "body over 1048576 bytes"),
    ],
)  # fmt: skip
async def test_a_bad_command_gets_a_one_line_4xx_and_leaves_nothing(
    shop: tuple[httpx.AsyncClient, AsyncEngine, Table],
    headers: dict[str, str],
    body: Any,
    status: int,
    reason: str,
) -> None:
    http, engine, charges = shop
    sent = {"content": body} if isinstance(body, str) else {"json": body}
    response = await http.post("/charges", headers=headers, **sent)
    assert response.status_code == status
    assert reason in response.json()["error"] and "\n" not in response.json()["error"]
    assert await count(engine, charges) == 0


async def test_a_command_for_another_step_is_refused_where_steps_are_named(
    shop: tuple[httpx.AsyncClient, AsyncEngine, Table],
) -> None:
    http, engine, charges = shop
    body = {"order_id": "o-9", "amount_cents": 1}
    wrong = await http.post("/charges/only", headers={"Idempotency-Key": "S-9:refund"}, json=body)
    assert wrong.status_code == 400 and await count(engine, charges) == 0
    assert wrong.json() == {
        "error": "the Idempotency-Key names step 'refund'; this takes charge-payment"
    }
    key = {"Idempotency-Key": f"S-{uuid.uuid4().hex[:6]}:charge-payment"}
    right = await http.post("/charges/only", headers=key, json=body)
    assert right.status_code == 200 and await count(engine, charges) == 1


async def test_a_command_is_applied_once_and_replayed_over_http(
    shop: tuple[httpx.AsyncClient, AsyncEngine, Table],
) -> None:
    http, engine, charges = shop
    body = {"order_id": "o-1", "amount_cents": 250}
    first = await http.post("/charges", headers=KEY, json=body)
    again = await http.post("/charges", headers=KEY, json=body)
    assert first.status_code == 200 and first.json() == {"id": "ch-o-1"}
    assert again.content == first.content and await count(engine, charges) == 1
    undo = await http.post(
        "/charges/refund", headers={"Idempotency-Key": "OrderSaga-o-1:charge"}, json={}
    )
    assert undo.status_code == 400 and "ends with ':compensate'" in undo.json()["error"]


@pytest.fixture(scope="module")
def payment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """The toolkit's example payment service, served by uvicorn in a process of its own."""
    folder = tmp_path_factory.mktemp("payment")
    process, port = serve_asgi(
        "services.payment_service:app", folder, {"PAYMENTS_DB": str(folder / "payments.db")}
    )
    url = f"http://127.0.0.1:{port}"
    yield url, folder / "payments.db"
    process.terminate()
    process.wait(10)


@pytest_asyncio.fixture(loop_scope="session")
async def orders(stack: Stack, payment: tuple[str, Path]) -> AsyncIterator[str]:
    queue = f"toolkit-{uuid.uuid4().hex[:6]}"
    services = {**stack.services, "payment": payment[0]}
    plugin = SagaloomPlugin(services=services, breakers=Breakers(None))
    async with Worker(stack.client, task_queue=queue, workflows=[OrderSaga], plugins=[plugin]):
        yield queue


async def test_the_order_saga_runs_against_a_participant_built_on_the_toolkit(
    stack: Stack, payment: tuple[str, Path], orders: str
) -> None:
    run = uuid.uuid4().hex[:6]
    plans = {
        f"{run}-ok": ({"amount_cents": 1_000, "country": "NL"}, SagaStatus.COMPLETED),
        f"{run}-aq": ({"amount_cents": 1_000, "country": "AQ"}, SagaStatus.COMPENSATED),
        f"{run}-big": ({"amount_cents": 500_000, "country": "NL"}, SagaStatus.COMPENSATED),
    }
    handles = {
        order: await start_saga(
            stack.client,
            ORDER,
            {"order_id": order, "customer": "ada", "sku": "widget", "quantity": 1, **data},
            task_queue=orders,
        )
        for order, (data, _) in plans.items()
    }
    results = {o: await asyncio.wait_for(outcome(h), 60) for o, h in handles.items()}
    assert {o: r.status for o, r in results.items()} == {o: w for o, (_, w) in plans.items()}
    assert results[f"{run}-big"].report is not None
    assert results[f"{run}-big"].report.failed_step == "charge-payment"  # refused: 402

    engine = sqlite_engine(payment[1])
    try:
        async with engine.connect() as connection:
            rows = await connection.exec_driver_sql(
                "SELECT order_id, status FROM payments WHERE order_id LIKE ?", (f"{run}-%",)
            )
            held = dict(rows.all())
            keys = await connection.exec_driver_sql(
                "SELECT key, status FROM sagaloom_inbox WHERE key LIKE ?", (f"%{run}%",)
            )
            inbox = dict(keys.all())
    finally:
        await engine.dispose()
    # charged once and kept; charged once and refunded; refused: nothing written
    assert held == {f"{run}-ok": "charged", f"{run}-aq": "refunded"}
    ids = {o: h.id for o, h in handles.items()}
    assert inbox == {
        f"{ids[f'{run}-ok']}:charge-payment": 200,
        f"{ids[f'{run}-aq']}:charge-payment": 200,
        f"{ids[f'{run}-aq']}:charge-payment:compensate": 200,
        f"{ids[f'{run}-big']}:charge-payment": 402,  # the refusal, kept for a retry
    }
