"""The participant toolkit over NATS: a depot that takes ``Command`` steps, built on it.

A real NATS JetStream server and a real worker process run the ToolkitPackSaga (pack at the
depot over NATS, then charge over HTTP); the depot is a :class:`SagaService` consuming its
commands in this process. Then a command whose ack was lost is delivered again: one effect, one
reply.
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import nats
import pytest
import pytest_asyncio
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, StreamConfig
from pydantic import BaseModel
from sqlalchemy import Column, Integer, MetaData, String, Table, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from sagaloom import SagaStatus
from sagaloom.client import outcome, start_saga
from sagaloom.server import NatsServer
from sagaloom.service import Answer, Refused, SagaService, sqlite_engine
from tests._broker_sagas import TOOLKIT_PACK
from tests._helpers import Stack, wait_for_reply_consumer

pytestmark = pytest.mark.integration

metadata = MetaData()
parcels = Table(
    "parcels",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("order_id", String(64), nullable=False),
    Column("status", String(16), nullable=False),
)


class Parcel(BaseModel):
    order_id: str
    quantity: int = 1


class OrderRef(BaseModel):
    order_id: str


def depot(path: Path) -> SagaService:
    """A depot participant: packs parcels (up to 50 items), unpacks them."""
    service = SagaService(sqlite_engine(path), metadata=metadata)

    @service.command("depot.pack")
    async def pack(body: Parcel, tx: AsyncSession) -> dict[str, str]:
        if body.quantity > 50:
            raise Refused(f"{body.quantity} items do not fit one parcel")
        await tx.execute(insert(parcels).values(order_id=body.order_id, status="packed"))
        return {"id": f"p-{body.order_id}", "order_id": body.order_id}

    @service.command("depot.unpack", undo=True)
    async def unpack(body: OrderRef, tx: AsyncSession, done: Answer) -> dict[str, str]:
        packed = update(parcels).where(parcels.c.order_id == body.order_id)
        await tx.execute(packed.values(status="unpacked"))
        return {"unpacked": done.data()["id"]}

    return service


async def held(service: SagaService) -> list[tuple[str, str]]:
    async with service.engine.connect() as connection:
        rows = await connection.execute(select(parcels.c.order_id, parcels.c.status))
        return sorted((r.order_id, r.status) for r in rows)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def queue(stack: Stack, nats_server: NatsServer) -> AsyncIterator[str]:
    name = f"toolkit-nats-{os.urandom(3).hex()}"
    process = stack.start_worker(
        name, "--module", "tests._broker_sagas", "--task-queue", name, "--nats", nats_server.url
    )
    await wait_for_reply_consumer(nats_server.url, process)
    yield name
    process.terminate()
    process.wait(20)


async def test_a_saga_packs_at_a_toolkit_depot_and_a_failure_unpacks_once(
    stack: Stack, nats_server: NatsServer, queue: str, tmp_path: Path
) -> None:
    service, stop = depot(tmp_path / "depot.sqlite3"), asyncio.Event()
    consumer = asyncio.create_task(service.consume(nats_server.url, durable="depot", stop=stop))
    run = uuid.uuid4().hex[:6]
    try:
        orders = {f"{run}-ok": "widget", f"{run}-no": "yacht", f"{run}-big": "widget"}
        handles = {
            order: await start_saga(
                stack.client,
                TOOLKIT_PACK,
                {"order_id": order, "sku": sku, "quantity": 60 if "big" in order else 2},
                task_queue=queue,
            )
            for order, sku in orders.items()
        }
        results = {o: await asyncio.wait_for(outcome(h), 90) for o, h in handles.items()}
    finally:
        stop.set()
        await consumer
    assert {o: r.status for o, r in results.items()} == {
        f"{run}-ok": SagaStatus.COMPLETED,
        f"{run}-no": SagaStatus.COMPENSATED,  # the charge was declined: unpacked
        f"{run}-big": SagaStatus.COMPENSATED,  # the depot said no: nothing to unpack
    }
    assert results[f"{run}-big"].report is not None
    assert results[f"{run}-big"].report.failed_step == "pack"
    assert "do not fit one parcel" in (results[f"{run}-big"].report.error or "")
    assert await held(service) == [(f"{run}-no", "unpacked"), (f"{run}-ok", "packed")]
    assert await service.outbox.pending() == 0  # every reply delivered


async def test_a_command_whose_ack_was_lost_is_applied_once_and_answered_once(
    nats_server: NatsServer, queue: str, tmp_path: Path
) -> None:
    """(``queue``: its worker made the engine's streams.)"""
    service = depot(tmp_path / "depot.sqlite3")
    await service.start()
    nc = await nats.connect(nats_server.url)
    js = nc.jetstream()
    run = uuid.uuid4().hex[:6]
    replies = f"lost-ack-{run}"
    await js.add_stream(StreamConfig(name=f"TEST_{run.upper()}", subjects=[f"{replies}.>"]))
    service.relay.publish = lambda s, p, h: _publish(js, s, p, h)
    try:
        durable = f"depot-{run}"
        await js.add_consumer(
            "SAGALOOM_COMMANDS",
            ConsumerConfig(
                durable_name=durable,
                ack_policy=AckPolicy.EXPLICIT,
                ack_wait=1,
                deliver_policy=DeliverPolicy.NEW,  # only the command below
                filter_subject="sagaloom.cmd.depot.pack",
            ),
        )
        key = f"ToolkitPackSaga-{run}:pack"
        await js.publish(
            "sagaloom.cmd.depot.pack",
            json.dumps({"order_id": run, "quantity": 1}).encode(),
            headers={"Idempotency-Key": key, "Sagaloom-Correlation-Id": key,
                     "Sagaloom-Reply-Token": "tok", "Sagaloom-Reply-To": f"{replies}.x",
                     "Nats-Msg-Id": f"{key}#1"},
        )  # fmt: skip
        sub = await js.pull_subscribe_bind(durable, "SAGALOOM_COMMANDS")
        (first,) = await sub.fetch(1, timeout=5)
        answer = await service.commands.handle(first, ack=False)  # committed; the ack is lost
        assert answer is not None and answer.ok
        (again,) = await sub.fetch(1, timeout=5)  # JetStream delivers it again after ack_wait
        assert again.metadata.num_delivered == 2
        replayed = await service.commands.handle(again)
        assert replayed is not None and replayed.body == answer.body
        await service.relay.deliver_due()
        info = await js.stream_info(f"TEST_{run.upper()}")
        assert info.state.messages == 1  # two replies written, one stored (same Nats-Msg-Id)
        assert await held(service) == [(run, "packed")]  # one effect
    finally:
        await service.stop()
        await nc.close()


async def _publish(js: object, subject: str, payload: bytes, headers: dict[str, str]) -> None:
    await js.publish(subject, payload, headers=headers)  # type: ignore[attr-defined]
