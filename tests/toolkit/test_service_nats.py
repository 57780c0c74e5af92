"""The participant toolkit over NATS: a depot that takes ``Command`` steps, built on it.

A real NATS JetStream server and a real worker process run the ToolkitPackSaga (pack at the
depot over NATS, then charge over HTTP); the depot is a :class:`SagaService` consuming its
commands in this process. Then a command whose ack was lost is delivered again: one effect, one
reply.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import nats
import pytest
import pytest_asyncio
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, StreamConfig
from pydantic import BaseModel
from sqlalchemy import Column, Integer, MetaData, String, Table, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from sagaloom import SagaStatus
from sagaloom.client import outcome, start_saga
from sagaloom.server import NatsServer
from sagaloom.service import Answer, CommandInfo, Refused, SagaService, sqlite_engine
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
    nc, js, run, replies = await _wired(service, nats_server, "lost-ack")
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
        info = await js.stream_info(f"LOST_ACK_{run.upper()}")
        assert info.state.messages == 1  # two replies written, one stored (same Nats-Msg-Id)
        assert await held(service) == [(run, "packed")]  # one effect
    finally:
        await service.stop()
        await nc.close()


async def _wired(
    service: SagaService, nats_server: NatsServer, name: str
) -> tuple[nats.NATS, JetStreamContext, str, str]:
    """Start ``service``, its relay publishing to the broker; a stream of its own for replies.

    Returns:
        The connection, its JetStream context, a run id, and the replies' subject prefix.
    """
    await service.start()
    nc = await nats.connect(nats_server.url)
    js = nc.jetstream()
    run = uuid.uuid4().hex[:6]
    replies = f"{name}-{run}"
    stream = f"{name}_{run}".replace("-", "_").upper()
    await js.add_stream(StreamConfig(name=stream, subjects=[f"{replies}.>"]))
    service.relay.publish = lambda s, p, h: _publish(js, s, p, h)
    return nc, js, run, replies


async def _publish(js: object, subject: str, payload: bytes, headers: dict[str, str]) -> None:
    await js.publish(subject, payload, headers=headers)  # type: ignore[attr-defined]


holds = Table(
    "holds",
    MetaData(),
    Column("key", String(200), primary_key=True),
    Column("account", String(64), nullable=False),
    Column("status", String(16), nullable=False),
)


class Hold(BaseModel):
    account: str


def vault(path: Path) -> SagaService:
    """A participant that holds an account for a saga until the saga's undo (a semantic lock)."""
    service = SagaService(sqlite_engine(path), metadata=holds.metadata)

    @service.command("vault.hold")
    async def hold(body: Hold, tx: AsyncSession, command: CommandInfo) -> dict[str, str]:
        await service.lock(tx, command, f"account:{body.account}")
        await tx.execute(insert(holds).values(key=command.key, account=body.account,
                                              status="held"))  # fmt: skip
        return {"held": body.account}

    @service.command("vault.release", undo=True)
    async def release(body: Hold, tx: AsyncSession, command: CommandInfo) -> dict[str, str]:
        done = update(holds).where(holds.c.key == command.key.removesuffix(":compensate"))
        await tx.execute(done.values(status="released"))
        return {"released": body.account}

    return service


async def test_a_command_on_a_record_another_saga_holds_is_delivered_again_once_it_is_free(
    nats_server: NatsServer, queue: str, tmp_path: Path
) -> None:
    """A held record makes the command wait (nak, no reply, no effect), not fail; the undo of
    the holder frees it and the redelivered command then applies once. (``queue``: its worker
    made the engine's streams.)"""
    service = vault(tmp_path / "vault.sqlite3")
    nc, js, run, replies = await _wired(service, nats_server, "held")

    async def send(subject: str, key: str) -> None:
        await js.publish(
            f"sagaloom.cmd.vault.{subject}",
            json.dumps({"account": f"acc-{run}"}).encode(),
            headers={"Idempotency-Key": key, "Sagaloom-Correlation-Id": key,
                     "Sagaloom-Reply-Token": "tok", "Sagaloom-Reply-To": f"{replies}.x",
                     "Nats-Msg-Id": f"{key}#1"},
        )  # fmt: skip

    async def replied() -> list[tuple[str, bool]]:
        await service.relay.deliver_due()
        sub = await js.subscribe(f"{replies}.>", deliver_policy=DeliverPolicy.ALL)
        seen: list[tuple[str, bool]] = []
        with contextlib.suppress(TimeoutError):
            while True:
                reply = json.loads((await sub.next_msg(timeout=1)).data)
                seen.append((reply["correlation_id"], reply["ok"]))
        await sub.unsubscribe()
        return seen

    first, second = f"TransferSaga-{run}-1:hold", f"TransferSaga-{run}-2:hold"
    try:
        durable = f"vault-{run}"
        await js.add_consumer(
            "SAGALOOM_COMMANDS",
            ConsumerConfig(durable_name=durable, ack_policy=AckPolicy.EXPLICIT, ack_wait=30,
                           deliver_policy=DeliverPolicy.NEW,
                           filter_subject="sagaloom.cmd.vault.>"),
        )  # fmt: skip
        sub = await js.pull_subscribe_bind(durable, "SAGALOOM_COMMANDS")
        await send("hold", first)
        await send("hold", second)
        taken, waiting = await sub.fetch(2, timeout=5)
        assert (await service.commands.handle(taken)).ok  # type: ignore[union-attr]
        busy = await service.commands.handle(waiting)
        assert busy is not None and busy.status == 429  # nak'ed: it comes again later
        assert await replied() == [(first, True)]  # the waiting one is not answered "no"

        await send("release", f"{first}:compensate")  # the holder's undo frees the account
        answers: list[tuple[str, int, int]] = []  # (key, status, delivery) in handling order
        while not answers or answers[-1][:2] != (second, 200):
            (message,) = await sub.fetch(1, timeout=10)
            answer = await service.commands.handle(message)
            assert answer is not None and message.headers is not None
            key = message.headers["Idempotency-Key"]
            answers.append((key, answer.status, message.metadata.num_delivered))
        undone = [key for key, _, _ in answers].index(f"{first}:compensate")
        assert answers[undone][1] == 200
        # Until the undo, the waiting command only waited again; after it, it applied.
        assert {status for key, status, _ in answers[:undone]} <= {429}
        assert answers[-1][2] >= 2  # a redelivery of the nak'ed command, not a new one

        assert sorted(await replied()) == sorted(
            [(first, True), (f"{first}:compensate", True), (second, True)]
        )
        async with service.engine.connect() as db:
            rows = {r.key: r.status for r in await db.execute(select(holds))}
        assert rows == {first: "released", second: "held"}  # each applied once
        assert await service.locks.held() == {f"account:acc-{run}": f"TransferSaga-{run}-2"}
    finally:
        await service.stop()
        await nc.close()
