"""Event-driven sagas on a real NATS JetStream server and a real worker process.

The worker (``saga worker --nats URL --trigger ...``) runs the fulfilment example, whose
warehouse participant answers over NATS (``services/_warehouse.py``, run here in-process so the
test can read its store and give it faults).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import nats
import pytest
import pytest_asyncio
from nats.js import JetStreamContext
from pydantic import SecretStr

from sagaloom import EVENT_TYPES, Resolution, SagaState, SagaStatus
from sagaloom._broker._bus import Broker
from sagaloom._wire._reply_auth import ReplySigner
from sagaloom.client import dead_letters, outcome, saga_events, start_saga
from sagaloom.participants import (
    COMMANDS_STREAM,
    DEAD_STREAM,
    MSG_ID,
    REPLIES_STREAM,
    REPLY_SUBJECT,
)
from sagaloom.server import DevServer, NatsServer, NatsServerOptions, free_port
from services import Warehouse
from tests._broker_sagas import BACKOFF_UNDO, QUICK, QUICK_PARK, QUICK_UNDO
from tests._helpers import REPLY_SECRET, ROOT, Stack, count_workflows, wait_for_status
from tests.worker.test_observability import scrape
from workflows.fulfilment import FULFILMENT

pytestmark = pytest.mark.integration
TRIGGER = "fulfilment.requested"


@pytest.fixture(scope="module")
def metrics() -> str:
    return f"127.0.0.1:{free_port()}"


@pytest.fixture(scope="module")
def queue() -> str:
    return f"broker-{os.urandom(3).hex()}"


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def worker(
    stack: Stack, nats_server: NatsServer, warehouse: Warehouse, queue: str, metrics: str
) -> AsyncIterator[subprocess.Popen[bytes]]:
    process = stack.start_worker(
        f"broker-{queue}",
        *("--module", "workflows.fulfilment", "--module", "tests._broker_sagas"),
        *("--task-queue", queue, "--nats", nats_server.url),
        *("--trigger", f"{TRIGGER}=FulfilmentSaga"),
        *("--metrics-address", metrics),
    )
    nc = await nats.connect(nats_server.url)
    try:  # ready once its consumers exist
        js = nc.jetstream()
        for _ in range(200):
            try:
                await js.consumer_info("SAGALOOM_REPLIES", "sagaloom-replies")
                await js.consumer_info(
                    "SAGALOOM_TRIGGERS",
                    f"sagaloom-trigger-FulfilmentSaga-{TRIGGER.replace('.', '_')}",
                )
                break
            except Exception:
                assert process.poll() is None, "the broker worker exited; see its log"
                await asyncio.sleep(0.1)
    finally:
        await nc.close()
    yield process
    process.terminate()
    process.wait(20)


@pytest_asyncio.fixture(loop_scope="session")
async def js(nats_server: NatsServer) -> AsyncIterator[JetStreamContext]:
    nc = await nats.connect(nats_server.url)
    yield nc.jetstream()
    await nc.close()


def saga(*args: str) -> subprocess.CompletedProcess[str]:
    """The ``saga`` command, as an operator runs it."""
    return subprocess.run(
        [sys.executable, "-m", "sagaloom", *args], capture_output=True, text=True, timeout=60
    )


def order(key: str, quantity: int = 3) -> dict[str, Any]:
    return {"order_id": key, "sku": "gadget", "quantity": quantity}


async def stored(js: JetStreamContext, stream: str, subject: str) -> list[Any]:
    """Every message of ``stream`` on ``subject`` (read without consuming)."""
    info = await js.stream_info(stream)
    found = []
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        try:
            raw = await js.get_msg(stream, seq)
        except Exception:
            continue
        if raw.subject == subject or (
            subject.endswith(">") and (raw.subject or "").startswith(subject[:-1])
        ):
            found.append(raw)
    return found


async def test_a_saga_over_broker_commands_completes_each_command_stored_once(
    stack: Stack, worker: Any, warehouse: Warehouse, js: JetStreamContext, queue: str, key: str
) -> None:
    handle = await start_saga(stack.client, FULFILMENT, order(key), task_queue=queue)
    result = await asyncio.wait_for(outcome(handle), 60)
    assert result.status is SagaStatus.COMPLETED, result
    assert result.report is not None
    parcel = result.report.outputs["pack"]
    assert parcel["order_id"] == key and parcel["id"].startswith("parcel-")
    # The warehouse applied the pack once, and the command carried the step's keys.
    record = warehouse.store.record(key)
    assert record is not None and record["status"] == "active"
    log = [e for e in warehouse.store.dump()["log"] if e["key"] == key]
    assert [e["op"] for e in log] == ["do"]
    assert log[0]["idem_key"] == f"{handle.id}:pack"
    commands = [
        m
        for m in await stored(js, COMMANDS_STREAM, "sagaloom.cmd.warehouse.pack")
        if (m.headers or {}).get("Idempotency-Key") == f"{handle.id}:pack"
    ]
    assert len(commands) == 1
    headers = commands[0].headers
    assert headers[MSG_ID] == f"{handle.id}:pack#1"
    assert headers["Sagaloom-Correlation-Id"] == f"{handle.id}:pack"
    assert headers["Sagaloom-Reply-To"] == REPLY_SUBJECT
    assert headers["Sagaloom-Reply-Token"] == ReplySigner(SecretStr(REPLY_SECRET)).token(
        f"{handle.id}:pack"
    )
    assert json.loads(commands[0].data) == order(key)
    # The reply completed the command's ask activity: no update, no further workflow task.
    assert await replies_taken(handle, "pack") == (1, 0)
    await keep_history(handle, "completed")


async def test_a_reply_through_the_update_ends_the_wait_of_an_open_ask(
    stack: Stack, worker: Any, warehouse: Warehouse, queue: str, key: str
) -> None:
    warehouse.faults[key] = "no-reply"  # it packs, its reply is lost: an operator answers
    handle = await start_saga(stack.client, FULFILMENT, order(key), task_queue=queue)
    await wait_for_open_ask(handle, "pack")
    parcel = {"id": "parcel-by-hand", "order_id": key}
    sent = await asyncio.to_thread(
        saga, "reply", handle.id, "--step", "pack", "--data", json.dumps(parcel),
        "--address", stack.address,
    )  # fmt: skip
    assert sent.returncode == 0, sent.stderr
    result = await asyncio.wait_for(outcome(handle), 20)  # not the 2-minute reply timeout
    assert result.status is SagaStatus.COMPLETED, result
    assert result.report is not None  # the operator's data, read by the step's output model
    assert result.report.outputs["pack"] == {**parcel, "packing_list_bytes": 0}
    assert await replies_taken(handle, "pack") == (0, 1)
    cancelled = [
        e
        async for e in handle.fetch_history_events()
        if e.HasField("activity_task_cancel_requested_event_attributes")
    ]
    assert len(cancelled) == 1  # the ask nobody waits for any more
    await keep_history(handle, "by-hand")


async def test_a_saga_cancelled_while_its_ask_waits_undoes_the_command_and_reads_offline(
    stack: Stack, worker: Any, warehouse: Warehouse, queue: str, key: str
) -> None:
    warehouse.faults[key] = "no-reply"  # it packs; the saga is cancelled waiting for the reply
    handle = await start_saga(stack.client, FULFILMENT, order(key), task_queue=queue)
    await wait_for_open_ask(handle, "pack")
    await handle.cancel()
    result = await asyncio.wait_for(outcome(handle), 30)
    assert result.status is SagaStatus.CANCELED, result
    record = warehouse.store.record(key)
    assert record is not None and record["status"] == "undone"  # the pack it may have done
    # Read from its history (a cancelled saga has no report): the ask counts as its step.
    shown = await asyncio.to_thread(saga, "status", handle.id, "--json", "--address", stack.address)
    assert shown.returncode == 0, shown.stderr
    state = json.loads(shown.stdout)
    assert state["source"] == "history"
    steps = {s["name"]: s["status"] for s in state["steps"]}
    assert steps == {"reserve-stock": "compensated", "pack": "compensated"}


async def wait_for_open_ask(handle: Any, step: str, within: float = 20) -> None:
    """Until the saga's ask for ``step`` has started (its command is published)."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        description = await handle.describe()
        pending = description.raw_description.pending_activities
        if any(a.activity_id == f"{step}:ask" and a.activity_type.name == "sagaloom.nats.ask"
               and a.HasField("last_started_time") for a in pending):  # fmt: skip
            return
        assert asyncio.get_running_loop().time() < deadline, f"no open ask for {step}"
        await asyncio.sleep(0.1)


async def test_a_negative_reply_fails_the_step_and_compensates(
    stack: Stack, worker: Any, warehouse: Warehouse, queue: str, key: str
) -> None:
    handle = await start_saga(stack.client, FULFILMENT, order(key, 80), task_queue=queue)
    result = await asyncio.wait_for(outcome(handle), 60)
    assert result.status is SagaStatus.COMPENSATED
    assert result.report is not None and result.report.failed_step == "pack"
    assert "ReplyNegative: 80 items do not fit one parcel" in (result.report.error or "")
    assert [c.step for c in result.report.compensations if c.ok] == ["pack", "reserve-stock"]
    assert await stack.record("inventory", key) == "undone"
    # Nothing was packed: the refused pack left no record, and its unpack had nothing to undo.
    assert warehouse.store.record(key) is None
    assert not [e for e in warehouse.store.dump()["log"] if e["key"] == key]
    await keep_history(handle, "compensated")


async def test_no_reply_in_time_compensates_and_the_late_reply_is_a_dead_letter_kept(
    stack: Stack, worker: Any, warehouse: Warehouse, js: JetStreamContext, queue: str, key: str
) -> None:
    warehouse.faults[key] = "no-reply"  # it packs, but its reply is lost
    handle = await start_saga(stack.client, QUICK, order(key), task_queue=queue)
    warehouse_sent = asyncio.get_running_loop().time()
    result = await asyncio.wait_for(outcome(handle), 60)
    assert result.status is SagaStatus.COMPENSATED
    assert "ReplyTimeout" in (result.report.error if result.report else "")
    assert asyncio.get_running_loop().time() - warehouse_sent >= 3
    history = len((await handle.fetch_history()).events)
    # The reply comes late, with a valid token: refused, kept as a dead letter, history unchanged.
    correlation = f"{handle.id}:pack"
    await js.publish(REPLY_SUBJECT, signed(correlation, {"id": "parcel-late", "order_id": key}))
    letter = await dead_letter_about(js, correlation)
    assert "finished or unknown" in letter["reason"] or "late or unexpected" in letter["reason"]
    assert len((await handle.fetch_history()).events) == history
    # operating.md: dead letters "are never retried on their own". The reply consumer took it
    # for good (acknowledged: nothing of it waits for a redelivery, 2 s apart), and it stays
    # listed for an operator, the saga untouched.
    for _ in range(8):
        await asyncio.sleep(0.5)
        info = await js.consumer_info(REPLIES_STREAM, "sagaloom-replies")
        assert info.num_ack_pending == 0 and info.num_redelivered == 0, info
    assert (await dead_letter_about(js, correlation))["seq"] == letter["seq"]
    assert len((await handle.fetch_history()).events) == history


async def test_a_reply_that_finds_temporal_away_is_kept_until_the_saga_takes_it(
    stack: Stack,
    worker: Any,
    warehouse: Warehouse,
    js: JetStreamContext,
    queue: str,
    key: str,
    dev_server: DevServer,
) -> None:
    # event-driven.md: the reply consumer "acknowledges only after the saga took it". The
    # Temporal server is frozen (SIGSTOP) when the reply comes: handing it over times out, so
    # it stays unacknowledged and comes again; once the server is back, the saga takes it.
    warehouse.faults[key] = "no-reply"  # it packs; the test sends the reply itself
    handle = await start_saga(stack.client, FULFILMENT, order(key), task_queue=queue)
    await wait_for_open_ask(handle, "pack")
    correlation = f"{handle.id}:pack"
    reply = signed(correlation, {"id": f"parcel-{key}", "order_id": key})
    os.kill(dev_server.pid, signal.SIGSTOP)
    try:
        await js.publish(REPLY_SUBJECT, reply)
        async with asyncio.timeout(40):  # one hand-over waits 10 s, then 2 s to come again
            while True:
                info = await js.consumer_info(REPLIES_STREAM, "sagaloom-replies")
                if info.num_redelivered:  # handed over once, unacknowledged, come again
                    break
                await asyncio.sleep(0.5)
    finally:
        os.kill(dev_server.pid, signal.SIGCONT)
    result = await asyncio.wait_for(outcome(handle), 60)
    assert result.status is SagaStatus.COMPLETED, result
    assert result.report is not None and result.report.outputs["pack"]["id"] == f"parcel-{key}"


def signed(correlation: str, data: dict[str, Any]) -> bytes:
    """A positive reply to ``correlation`` with a valid token, as a participant publishes it."""
    token = ReplySigner(SecretStr(REPLY_SECRET)).token(correlation)
    reply = {"correlation_id": correlation, "token": token, "ok": True, "data": data}
    return json.dumps(reply).encode()


async def dead_letter_about(
    js: JetStreamContext, needle: str, within: float = 20
) -> dict[str, Any]:
    deadline = asyncio.get_running_loop().time() + within
    while True:
        for message in await stored(js, DEAD_STREAM, "sagaloom.dead.>"):
            if needle.encode() in (message.data or b""):
                return {
                    "reason": message.headers.get("Sagaloom-Dead-Reason", ""),
                    "seq": message.seq,
                }
        assert asyncio.get_running_loop().time() < deadline, f"no dead letter about {needle}"
        await asyncio.sleep(0.2)


async def test_replies_that_cannot_be_processed_become_dead_letters_never_history(
    stack: Stack,
    worker: Any,
    warehouse: Warehouse,
    js: JetStreamContext,
    queue: str,
    key: str,
    nats_server: NatsServer,
) -> None:
    warehouse.faults[key] = "no-reply"
    handle = await start_saga(stack.client, QUICK, order(key), task_queue=queue)
    await asyncio.sleep(1)  # the saga waits for its reply now
    history = len((await handle.fetch_history()).events)
    correlation = f"{handle.id}:pack"
    signer = ReplySigner(SecretStr(REPLY_SECRET))
    bad = [
        (b"{not json", "malformed reply"),
        (json.dumps({"correlation_id": correlation, "ok": True}).encode(), "malformed reply"),
        (
            json.dumps(
                {"correlation_id": correlation, "token": "forged", "ok": True, "marker": 1}
            ).encode(),
            "malformed reply",
        ),
        (
            json.dumps(
                {
                    "correlation_id": correlation,
                    "token": "forged-token",
                    "ok": True,
                    "data": {"m": "bad-token"},
                }
            ).encode(),
            "bad reply token",
        ),
        (
            json.dumps(
                {
                    "correlation_id": f"{handle.id}:reserve-stock",
                    "token": signer.token(f"{handle.id}:reserve-stock"),
                    "ok": True,
                    "data": {"m": "unexpected"},
                }
            ).encode(),
            "rejected by the saga",
        ),
        (
            json.dumps(
                {
                    "correlation_id": "NoSuchSaga-x:pack",
                    "token": signer.token("NoSuchSaga-x:pack"),
                    "ok": True,
                }
            ).encode(),
            "finished or unknown",
        ),
    ]
    before = len(await stored(js, DEAD_STREAM, "sagaloom.dead.>"))
    for body, _ in bad:
        await js.publish(REPLY_SUBJECT, body)
    deadline = asyncio.get_running_loop().time() + 20
    while len(await stored(js, DEAD_STREAM, "sagaloom.dead.>")) < before + len(bad):
        assert asyncio.get_running_loop().time() < deadline, (
            "not every bad reply became a dead letter"
        )
        await asyncio.sleep(0.2)
    letters = (await stored(js, DEAD_STREAM, "sagaloom.dead.>"))[before:]
    reasons = sorted(m.headers["Sagaloom-Dead-Reason"] for m in letters)
    for _, why in bad:
        assert any(why in r for r in reasons), (why, reasons)
    assert all(m.headers["Sagaloom-Dead-Subject"] == REPLY_SUBJECT for m in letters)
    # None of them reached the saga's history; the CLI lists them with their reasons.
    assert len((await handle.fetch_history()).events) == history
    listed = await asyncio.to_thread(saga, "dead-letters", "--nats", nats_server.url, "--json")
    assert listed.returncode == 0, listed.stderr
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    assert {r["reason"] for r in rows} >= set(reasons)
    assert (await asyncio.wait_for(outcome(handle), 30)).status is SagaStatus.COMPENSATED


async def test_a_duplicate_reply_is_taken_once(
    stack: Stack, worker: Any, warehouse: Warehouse, js: JetStreamContext, queue: str, key: str
) -> None:
    warehouse.faults[key] = "reply-twice"
    handle = await start_saga(stack.client, FULFILMENT, order(key), task_queue=queue)
    assert (await asyncio.wait_for(outcome(handle), 60)).status is SagaStatus.COMPLETED
    letter = await dead_letter_about(js, f"{handle.id}:pack")
    assert "duplicate reply" in letter["reason"] or "finished or unknown" in letter["reason"]
    assert await replies_taken(handle, "pack") == (1, 0)  # as the ask's result, once


async def keep_history(handle: Any, name: str) -> None:
    """Record this run for tests/release/test_replay.py (``SAGALOOM_RECORD_HISTORIES=<prefix>``).

    ``SAGALOOM_RECORD_HISTORIES=broker-ask pytest tests/broker/test_broker.py`` wrote the
    ``broker-ask-*`` histories; ``broker-update-*`` were recorded so on the code before the ask.
    """
    prefix = os.environ.get("SAGALOOM_RECORD_HISTORIES")
    if not prefix:
        return
    folder = ROOT / "tests" / "histories"
    (folder / f"{prefix}-{name}.json").write_text((await handle.fetch_history()).to_json())
    ids_file = folder / "broker-ids.json"
    ids = json.loads(ids_file.read_text()) if ids_file.exists() else {}
    ids[f"{prefix}-{name}"] = handle.id
    ids_file.write_text(json.dumps(dict(sorted(ids.items())), indent=2) + "\n")


async def replies_taken(handle: Any, step: str) -> tuple[int, int]:
    """(asks of ``step`` completed by their reply, replies taken through the update)."""
    asks: set[int] = set()
    completed = updates = 0
    async for e in handle.fetch_history_events():
        if e.HasField("activity_task_scheduled_event_attributes"):
            a = e.activity_task_scheduled_event_attributes
            if a.activity_type.name == "sagaloom.nats.ask" and a.activity_id == f"{step}:ask":
                asks.add(e.event_id)
        elif e.HasField("activity_task_completed_event_attributes"):
            completed += e.activity_task_completed_event_attributes.scheduled_event_id in asks
        elif e.HasField("workflow_execution_update_accepted_event_attributes"):
            updates += 1
    return completed, updates


async def test_lifecycle_events_are_published_in_order_and_stored_once_each(
    stack: Stack, worker: Any, nats_server: NatsServer, js: JetStreamContext, queue: str, key: str
) -> None:
    handle = await start_saga(stack.client, FULFILMENT, order(key), task_queue=queue)
    assert (await asyncio.wait_for(outcome(handle), 60)).status is SagaStatus.COMPLETED
    events = await saga_events(nats_server.url, handle.id)
    assert [e.type for e in events] == [
        "io.sagaloom.saga.started",
        "io.sagaloom.step.completed",
        "io.sagaloom.step.completed",
        "io.sagaloom.saga.completed",
    ]
    assert all(e.type in EVENT_TYPES and e.subject == handle.id for e in events)
    assert [e.data.get("step") for e in events[1:3]] == ["reserve-stock", "pack"]
    assert all(e.data["key"] == key and e.source == "sagaloom/FulfilmentSaga" for e in events)
    assert len({e.id for e in events}) == len(events)
    # A retried publish (an activity retry, a worker that died before completing it) stores
    # nothing new: the event id is the message id.
    broker = Broker(nats_server.url, ReplySigner(SecretStr(REPLY_SECRET)))
    try:
        await broker.publish_events(events)
    finally:
        await broker.aclose()
    assert [e.id for e in await saga_events(nats_server.url, handle.id)] == [e.id for e in events]
    # The CLI prints them.
    printed = await asyncio.to_thread(saga, "events", handle.id, "--nats", nats_server.url)
    assert printed.returncode == 0, printed.stderr
    assert "saga.completed" in printed.stdout and "step=pack" in printed.stdout


async def test_events_start_sagas_once_and_invalid_ones_are_dead_letters(
    stack: Stack, worker: Any, js: JetStreamContext, nats_server: NatsServer, key: str
) -> None:
    event = {
        "specversion": "1.0",
        "id": f"evt-{key}",
        "type": "com.example.fulfilment.requested",
        "source": "shop",
        "data": order(key),
    }
    await js.publish(TRIGGER, json.dumps(event).encode())
    workflow_id = f"FulfilmentSaga-event-evt-{key}"
    handle = stack.client.get_workflow_handle(workflow_id)
    for _ in range(100):
        if await count_workflows(stack.client, f'WorkflowId = "{workflow_id}"'):
            break
        await asyncio.sleep(0.2)
    assert (await asyncio.wait_for(outcome(handle), 60)).status is SagaStatus.COMPLETED
    # The same event again (a producer's retry, a redelivery): nothing new starts.
    await js.publish(TRIGGER, json.dumps(event).encode())
    await asyncio.sleep(2)
    assert await count_workflows(stack.client, f'WorkflowId = "{workflow_id}"') == 1
    # An invalid event: a dead letter naming the field; re-delivered after a "fix", dead again.
    bad = {**event, "id": f"bad-{key}", "data": order(key, quantity=-1)}
    await js.publish(TRIGGER, json.dumps(bad).encode())
    letter = await dead_letter_about(js, f"bad-{key}")
    assert "invalid input" in letter["reason"] and "quantity" in letter["reason"]
    again = await asyncio.to_thread(
        saga, "dead-letters", "--nats", nats_server.url, "--redeliver", str(letter["seq"])
    )
    assert again.returncode == 0 and f"published again to {TRIGGER}" in again.stdout, again.stderr
    assert all(d.seq != letter["seq"] for d in await dead_letters(nats_server.url))
    relettered = await dead_letter_about(js, f"bad-{key}")
    assert relettered["seq"] > letter["seq"]
    assert (
        await count_workflows(stack.client, f'WorkflowId = "FulfilmentSaga-event-bad-{key}"') == 0
    )
    # An event without an id (a plain body, no Nats-Msg-Id): sent twice, it would start two
    # sagas (two charges). Refused to the dead letters instead; nothing starts.
    plain = {**order(f"noid-{key}")}
    before = await count_workflows(stack.client, f'SagaKey = "noid-{key}"')
    for _ in range(2):
        await js.publish(TRIGGER, json.dumps(plain).encode())
    letter = await dead_letter_about(js, f"noid-{key}")
    assert "no event id" in letter["reason"]
    await asyncio.sleep(1)
    assert await count_workflows(stack.client, f'SagaKey = "noid-{key}"') == before == 0


async def test_a_flood_of_poison_replies_never_stalls_the_reply_consumer(
    stack: Stack, worker: Any, js: JetStreamContext, queue: str, key: str
) -> None:
    """Before: a non-ASCII token raised in the token check; the consumer never acked, and 1,000
    such replies (publish permission, no secret) filled max_ack_pending: every saga waiting for
    a reply stalled, and the worker log grew by a traceback per redelivery."""
    poison = json.dumps(
        {"correlation_id": f"FulfilmentSaga-{key}:pack", "token": "t\u00f6k\u00e9n", "ok": True},
        ensure_ascii=False,
    ).encode()
    await asyncio.gather(*(js.publish(REPLY_SUBJECT, poison) for _ in range(1000)))
    handle = await start_saga(stack.client, FULFILMENT, order(key), task_queue=queue)
    assert (await asyncio.wait_for(outcome(handle), 60)).status is SagaStatus.COMPLETED
    deadline = asyncio.get_running_loop().time() + 60
    while True:
        letters = [
            m
            for m in await stored(js, DEAD_STREAM, "sagaloom.dead.reply")
            if "t\u00f6k\u00e9n".encode() in (m.data or b"")
        ]
        if len(letters) >= 1000:
            break
        assert asyncio.get_running_loop().time() < deadline, f"{len(letters)} dead letters"
        await asyncio.sleep(1)
    assert {m.headers["Sagaloom-Dead-Reason"] for m in letters} == {"bad reply token"}
    info = await js.consumer_info("SAGALOOM_REPLIES", "sagaloom-replies")
    assert info.num_ack_pending == 0 and info.num_pending == 0


async def test_broker_metrics_count_dead_letters_reply_latency_and_pending(
    stack: Stack, worker: Any, js: JetStreamContext, metrics: str, queue: str, key: str
) -> None:
    # (runs last in this module: the earlier tests left dead letters and delivered replies)
    handle = await start_saga(stack.client, FULFILMENT, order(key), task_queue=queue)
    assert (await asyncio.wait_for(outcome(handle), 60)).status is SagaStatus.COMPLETED
    await js.publish(REPLY_SUBJECT, b"{not json")
    await dead_letter_about(js, "{not json")
    await asyncio.sleep(6)  # the pending gauge is refreshed every 5 s
    async with httpx.AsyncClient() as http:
        text = (await http.get(f"http://{metrics}/metrics")).text
    assert scrape(text, "sagaloom_dead_letters", kind="reply") >= 1
    assert scrape(text, "sagaloom_reply_latency_count") >= 1
    assert "sagaloom_broker_pending" in text and 'consumer="sagaloom-replies"' in text


async def test_no_dead_letters_lists_none(tmp_path: Path) -> None:
    server = NatsServer(NatsServerOptions.in_folder(tmp_path))
    await server.start()
    try:
        broker = Broker(server.url, ReplySigner(SecretStr(REPLY_SECRET)))
        await broker.jetstream()  # the streams exist, empty
        await broker.aclose()
        assert await dead_letters(server.url) == []
        listed = await asyncio.to_thread(saga, "dead-letters", "--nats", server.url)
        assert listed.returncode == 0 and "(0 dead letter(s))" in listed.stderr
    finally:
        server.stop()


async def commands_for(
    js: JetStreamContext, idem_key: str, subject: str, stream: str = COMMANDS_STREAM
) -> list[Any]:
    return [
        m
        for m in await stored(js, stream, subject)
        if (m.headers or {}).get("Idempotency-Key") == idem_key
    ]


async def test_a_later_attempt_of_an_ask_publishes_its_command_again_stored_once(
    nats_server: NatsServer, js: JetStreamContext
) -> None:
    """An ask whose worker died before its publish is healed by its next attempt."""
    from temporalio.testing import ActivityEnvironment

    from sagaloom._saga._model import BrokerCommand

    broker = Broker(nats_server.url, ReplySigner(SecretStr(REPLY_SECRET)))
    key = f"AskSaga-{os.urandom(3).hex()}:pack"
    command = BrokerCommand(subject="warehouse.probe", body={}, correlation_id=key,
                            msg_id=f"{key}#1")  # fmt: skip
    subject = "sagaloom.cmd.warehouse.probe"
    now = datetime.now(UTC)

    async def attempt(n: int, first_scheduled: datetime) -> None:
        env = ActivityEnvironment()
        env.info = dataclasses.replace(env.info, attempt=n, scheduled_time=first_scheduled)
        with pytest.raises(BaseException) as ended:
            await env.run(broker.ask, command)
        assert type(ended.value).__name__ == "_CompleteAsyncError"  # left open for its reply

    try:
        await attempt(2, now - timedelta(seconds=40))  # the first attempt never published
        assert len(await commands_for(js, key, subject)) == 1
        await attempt(3, now - timedelta(seconds=70))  # again: the stream stores it once
        await attempt(1, now)
        assert len(await commands_for(js, key, subject)) == 1
        await attempt(9, now - timedelta(minutes=10))  # past the de-duplication window: waits
        assert len(await commands_for(js, key, subject)) == 1
    finally:
        await broker.aclose()


async def test_an_unanswered_undo_command_is_sent_again_until_answered(
    stack: Stack, worker: Any, warehouse: Warehouse, js: JetStreamContext, queue: str, key: str
) -> None:
    """Before: sent once; its reply timed out and the saga parked ~40 s after the start."""
    warehouse.faults[key] = "no-reply,mute-undo"  # the pack's reply is lost; undos unanswered
    handle = await start_saga(stack.client, QUICK_UNDO, order(key), task_queue=queue)
    correlation = f"{handle.id}:pack:compensate"
    deadline = asyncio.get_running_loop().time() + 40
    while len(sent := await commands_for(js, correlation, "sagaloom.cmd.warehouse.unpack")) < 3:
        assert asyncio.get_running_loop().time() < deadline, f"{len(sent)} undo send(s) only"
        await asyncio.sleep(0.5)
    warehouse.faults[key] = "no-reply"  # it answers again
    result = await asyncio.wait_for(outcome(handle), 30)
    assert result.status is SagaStatus.COMPENSATED, result
    sent = await commands_for(js, correlation, "sagaloom.cmd.warehouse.unpack")
    ids = [m.headers[MSG_ID] for m in sent]
    assert ids == [f"{correlation}#{n}" for n in range(1, len(sent) + 1)]  # each send is new
    await keep_history(handle, "resent")
    assert {json.dumps(json.loads(m.data)) for m in sent} == {json.dumps({"order_id": key})}
    assert {m.headers["Sagaloom-Correlation-Id"] for m in sent} == {correlation}
    # The effect applied once: packed, then undone once however often the undo came.
    log = [e["op"] for e in warehouse.store.dump()["log"] if e["key"] == key]
    assert log == ["do", "undo"]
    pack = next(c for c in result.report.compensations if c.step == "pack")
    assert pack.ok


async def test_a_negative_reply_to_an_undo_parks_the_saga_at_once(
    stack: Stack, worker: Any, warehouse: Warehouse, js: JetStreamContext, queue: str, key: str
) -> None:
    """event-driven.md: "A negative reply to an undo is an answer: it parks the saga at once" —
    not re-sent as if unanswered (this saga re-sends an unanswered undo every ~3 s)."""
    warehouse.faults[key] = "no-reply,refuse-undo"  # the pack times out (2 s); its undo refused
    handle = await start_saga(stack.client, QUICK_UNDO, order(key), task_queue=queue)
    correlation = f"{handle.id}:pack:compensate"
    subject = "sagaloom.cmd.warehouse.unpack"
    state = await wait_for_status(handle, SagaStatus.NEEDS_ATTENTION, within=12)
    pack = next(s for s in state.steps if s.name == "pack")
    assert state.parked_step == "pack"
    assert "unpack refused (injected)" in (pack.compensation_error or "")
    await asyncio.sleep(4)  # past a re-send's pause: nothing more was sent
    assert len(await commands_for(js, correlation, subject)) == 1
    assert (await handle.query("saga_state", result_type=SagaState)).status is (
        SagaStatus.NEEDS_ATTENTION
    )
    # the operator's way out (and no parked saga left for the alert tests on this server)
    warehouse.faults[key] = "no-reply"
    await handle.execute_update("resolve", Resolution(action="retry", note="warehouse fixed"))
    assert (await asyncio.wait_for(outcome(handle), 30)).status is SagaStatus.COMPENSATED


async def test_the_gaps_between_resent_undo_commands_grow_by_the_back_off_up_to_its_cap(
    stack: Stack, worker: Any, warehouse: Warehouse, js: JetStreamContext, queue: str, key: str
) -> None:
    """event-driven.md: an unanswered undo is re-sent after a back-off that grows by
    ``backoff_coefficient`` up to ``maximum_interval`` — not at a fixed pace. Reply timeout 1 s,
    back-off 1 s doubling to 4 s: sends about 2, 3, 5, 5 s apart."""
    warehouse.faults[key] = "no-reply,mute-undo"
    handle = await start_saga(stack.client, BACKOFF_UNDO, order(key), task_queue=queue)
    correlation = f"{handle.id}:pack:compensate"
    subject = "sagaloom.cmd.warehouse.unpack"
    async with asyncio.timeout(45):
        while True:
            if len(sent := await commands_for(js, correlation, subject)) >= 5:
                break
            await asyncio.sleep(0.3)
    warehouse.faults[key] = "no-reply"
    times = [m.time.timestamp() for m in sent[:5]]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    # each gap: the reply timeout (1 s) and the pause; the pause doubles, then holds at its cap
    wanted = [1 + 1, 1 + 2, 1 + 4, 1 + 4]
    for gap, want in zip(gaps, wanted, strict=True):
        assert want - 0.3 <= gap <= want + 1.5, (gaps, wanted)
    assert gaps[1] - gaps[0] >= 0.6 and gaps[2] - gaps[1] >= 1.4  # it grows
    assert abs(gaps[3] - gaps[2]) <= 1.0  # and stops growing at maximum_interval
    result = await asyncio.wait_for(outcome(handle), 30)
    assert result.status is SagaStatus.COMPENSATED


async def test_an_operators_retry_of_an_undo_command_is_answered_at_once(
    stack: Stack, worker: Any, warehouse: Warehouse, js: JetStreamContext, queue: str, key: str
) -> None:
    """Before: the participant's re-sent stored reply carried the id of the late first one and
    JetStream dropped it as a duplicate for 10 minutes: every retry parked again."""
    warehouse.faults[key] = "no-reply,slow-undo"  # the undo's replies come after the budget
    handle = await start_saga(stack.client, QUICK_PARK, order(key), task_queue=queue)
    correlation = f"{handle.id}:pack:compensate"
    deadline = asyncio.get_running_loop().time() + 30
    while (await handle.query("saga_state", result_type=SagaState)).status is not (
        SagaStatus.NEEDS_ATTENTION
    ):
        assert asyncio.get_running_loop().time() < deadline, "it never parked"
        await asyncio.sleep(0.3)
    sends = len(await commands_for(js, correlation, "sagaloom.cmd.warehouse.unpack"))
    # The late replies arrive once it parked: dead letters (and, before, the dedupe slot taken).
    deadline = asyncio.get_running_loop().time() + 12 * sends + 10
    while len([m for m in await stored(js, DEAD_STREAM, "sagaloom.dead.>")
               if correlation.encode() in (m.data or b"")]) < sends:  # fmt: skip
        assert asyncio.get_running_loop().time() < deadline, "the late replies never came"
        await asyncio.sleep(0.5)
    warehouse.faults[key] = "no-reply"  # fixed: it answers at once now
    await handle.execute_update("resolve", Resolution(action="retry", note="warehouse fixed"))
    result = await asyncio.wait_for(outcome(handle), 20)
    assert result.status is SagaStatus.COMPENSATED, result


async def test_dead_letters_list_newest_first_with_filters(tmp_path: Path) -> None:
    """Before: the oldest 100 first; after a flood the newest needed --limit 5015."""
    server = NatsServer(NatsServerOptions.in_folder(tmp_path))
    await server.start()
    try:
        broker = Broker(server.url, ReplySigner(SecretStr(REPLY_SECRET)))
        js = await broker.jetstream()
        for i in range(150):
            kind, subject = ("reply", REPLY_SUBJECT) if i % 3 else ("trigger", "orders.placed")
            headers = {"Sagaloom-Dead-Reason": f"why {i}", "Sagaloom-Dead-Subject": subject}
            await js.publish(f"sagaloom.dead.{kind}", f"letter {i}".encode(), headers=headers)
        await broker.aclose()
        newest = await dead_letters(server.url, limit=5)
        assert [d.data for d in newest] == [f"letter {i}".encode() for i in range(149, 144, -1)]
        oldest = await dead_letters(server.url, limit=2, oldest_first=True)
        assert [d.data for d in oldest] == [b"letter 0", b"letter 1"]
        triggers = await dead_letters(server.url, limit=3, kind="trigger")
        assert [d.data for d in triggers] == [b"letter 147", b"letter 144", b"letter 141"]
        by_subject = await dead_letters(server.url, limit=500, subject="orders.>")
        assert len(by_subject) == 50 and {d.subject for d in by_subject} == {"orders.placed"}
        assert await dead_letters(server.url, subject="orders.*.x") == []
        listed = await asyncio.to_thread(
            saga, "dead-letters", "--nats", server.url, "--kind", "reply", "--limit", "2", "--json"
        )
        assert listed.returncode == 0, listed.stderr
        rows = [json.loads(line) for line in listed.stdout.splitlines()]
        assert [r["data"] for r in rows] == ["letter 149", "letter 148"]
    finally:
        server.stop()


async def test_a_broker_outage_logs_one_line_per_disconnect_and_reconnect(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Before: nats-py's default error callback logged a full traceback per disconnect."""
    server = NatsServer(NatsServerOptions.in_folder(tmp_path))
    await server.start()
    broker = Broker(server.url, ReplySigner(SecretStr(REPLY_SECRET)))
    try:
        await broker.jetstream()
        server.stop()
        await asyncio.sleep(2)  # a few reconnect attempts are refused meanwhile
        await server.start()
        js = await broker.jetstream()
        for _ in range(100):
            try:
                await js.stream_info(DEAD_STREAM)
                break
            except Exception:
                await asyncio.sleep(0.1)
        await asyncio.sleep(0.5)
    finally:
        await broker.aclose()
        server.stop()
    lines = [r for r in caplog.records if r.name.startswith(("sagaloom.broker", "nats"))]
    text = [r.getMessage() for r in lines]
    assert any("disconnected" in t for t in text), text
    assert any("reconnected" in t for t in text), text
    assert all(r.exc_info is None for r in lines), "a traceback was logged"
    assert not any("encountered error" in t for t in text)


def _other_app(
    stack: Stack,
    log: Path,
    queue: str,
    nats_url: str,
    namespace: str = "otherapp",
    *extra: str,
    **env: str,
) -> subprocess.Popen[bytes]:
    """Another application's worker: its own secret, task queue and broker namespace."""
    env = {**stack.worker_env(), "SAGALOOM_REPLY_SECRET": "another-apps-secret", **env}
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "sagaloom", "worker", "--module", "workflows.fulfilment",
             "--task-queue", queue, "--nats", nats_url, "--nats-namespace", namespace, *extra],
            env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT,
        )  # fmt: skip


async def test_two_apps_on_one_broker_never_take_each_others_messages(
    stack: Stack,
    worker: Any,
    nats_server: NatsServer,
    js: JetStreamContext,
    queue: str,
    key: str,
    tmp_path: Path,
) -> None:
    """Before: a second app's worker on the same NATS server shared the durable reply consumer
    and dead-lettered the first app's replies as "bad reply token" (another secret)."""
    other_queue = f"{queue}-other"
    other = _other_app(stack, tmp_path / "other-app.log", other_queue, nats_server.url)
    other_warehouse = Warehouse(nats_server.url, tmp_path / "other.sqlite3", "otherapp").start()
    try:
        for _ in range(200):  # the other app's consumer exists
            try:
                await js.consumer_info("OTHERAPP_REPLIES", "otherapp-replies")
                break
            except Exception:
                assert other.poll() is None, (tmp_path / "other-app.log").read_text()
                await asyncio.sleep(0.1)
        mine = [
            await start_saga(stack.client, FULFILMENT, order(f"{key}-{i}"), task_queue=queue)
            for i in range(3)
        ]
        theirs = [
            await start_saga(stack.client, FULFILMENT, order(f"{key}-o{i}"), task_queue=other_queue)
            for i in range(3)
        ]
        results = await asyncio.wait_for(asyncio.gather(*(outcome(h) for h in mine + theirs)), 90)
        assert [r.status for r in results] == [SagaStatus.COMPLETED] * 6
        # Each app's commands, replies and dead letters stayed in its own streams.
        for handle in theirs:
            pack = f"{handle.id}:pack"
            assert await commands_for(js, pack, "otherapp.cmd.warehouse.pack", "OTHERAPP_COMMANDS")
            assert not await commands_for(js, f"{handle.id}:pack", "sagaloom.cmd.warehouse.pack")
        for stream in ("SAGALOOM_DEAD", "OTHERAPP_DEAD"):
            with contextlib.suppress(Exception):
                letters = await stored(js, stream, ">")
                assert not [m for m in letters if key.encode() in (m.data or b"")], stream
    finally:
        other.terminate()
        other.wait(20)
        other_warehouse.close()


async def test_the_reply_and_dead_letter_streams_are_bounded_and_say_when_they_discard(
    stack: Stack, nats_server: NatsServer, js: JetStreamContext, queue: str, tmp_path: Path
) -> None:
    """Before: no bounds; a flood of 5,000 bogus replies was stored twice (replies, dead)."""
    metrics = f"127.0.0.1:{free_port()}"
    log = tmp_path / "bounded.log"
    worker = _other_app(
        stack, log, f"{queue}-bounded", nats_server.url, "bounded",
        "--metrics-address", metrics, SAGALOOM_NATS_MAX_MSGS="100",
    )  # fmt: skip
    try:
        for _ in range(200):
            try:
                await js.consumer_info("BOUNDED_REPLIES", "bounded-replies")
                break
            except Exception:
                assert worker.poll() is None, log.read_text()
                await asyncio.sleep(0.1)
        for _ in range(15):  # 300 bogus replies, in bursts the consumer keeps up with
            await asyncio.gather(*(js.publish("bounded.replies", b"{flood") for _ in range(20)))
            await asyncio.sleep(0.1)
        deadline = asyncio.get_running_loop().time() + 60
        while (await js.stream_info("BOUNDED_DEAD")).state.first_seq < 200:
            assert asyncio.get_running_loop().time() < deadline, "the flood was not dead-lettered"
            await asyncio.sleep(0.5)
        for stream in ("BOUNDED_REPLIES", "BOUNDED_DEAD"):
            info = await js.stream_info(stream)
            assert info.config.max_msgs == 100 and info.state.messages <= 100, stream
        assert (await js.stream_info("BOUNDED_REPLIES")).state.messages == 0  # taken: removed
        while "is at its limit" not in log.read_text():  # within a check interval
            assert asyncio.get_running_loop().time() < deadline + 15, log.read_text()[-2000:]
            await asyncio.sleep(0.5)
        async with httpx.AsyncClient() as http:
            text = (await http.get(f"http://{metrics}/metrics")).text
        assert scrape(text, "sagaloom_broker_discarded", stream="BOUNDED_DEAD") >= 150
        assert log.read_text().count("is at its limit") <= 2  # a line a minute, not a flood
    finally:
        worker.terminate()
        worker.wait(20)
