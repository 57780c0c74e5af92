"""Asynchronous participants: a step's command, then the participant's reply.

Replies reach a saga through the ``participant_reply`` update, whose validator refuses what the
saga does not wait for; over HTTP they also need the command's reply token. These tests attack
that door as a stranger and as a misbehaving participant would, and check that nothing refused
reaches the saga's history and that the worker stays up.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio
from pydantic import SecretStr
from temporalio.client import (
    Client,
    WorkflowHandle,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.worker import Worker

from sagaloom import Reply, SagaState, SagaStatus, StepStatus
from sagaloom._wire._reply_auth import ReplySigner
from sagaloom.client import outcome, start_saga
from sagaloom.server import free_port
from sagaloom.worker._endpoint import WorkerEndpoint
from tests._helpers import TASK_QUEUE, Stack, cli, trip
from tests._sagas import PATIENT, REPLYING, PatientSaga, ReplyingSaga
from tests._scripted import CALLS, scripted
from workflows.trip import TRIP

pytestmark = pytest.mark.integration
QUEUE = "replies"
SIGNER = ReplySigner(SecretStr("replies-test-secret"))
UPDATE = "participant_reply"


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def client(stack: Stack) -> AsyncIterator[Client]:
    async with Worker(
        stack.client,
        task_queue=QUEUE,
        workflows=[ReplyingSaga, PatientSaga],
        activities=[scripted],
    ):
        yield stack.client


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def endpoint(client: Client) -> AsyncIterator[str]:
    """A worker endpoint as ``saga worker`` serves it, delivering through the update."""

    async def deliver(reply: Reply) -> None:
        handle = client.get_workflow_handle(reply.correlation_id.rsplit(":", 1)[0])
        await handle.execute_update(UPDATE, reply)

    address = f"127.0.0.1:{free_port()}"
    server = WorkerEndpoint(address, deliver, SIGNER)
    await server.start()
    server.ready = True
    yield f"http://{address}"
    await server.stop()


async def start(client: Client, saga: Any = REPLYING, **steps: str) -> tuple[Any, str]:
    run = uuid.uuid4().hex[:8]
    plan = {"run": run, "steps": steps}
    return await start_saga(client, saga, plan, task_queue=QUEUE), run


async def commanded(run: str, path: str = "/b") -> None:
    for _ in range(200):
        if path in [p for p, _ in CALLS[run]]:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{path} was never called")


async def history_length(handle: WorkflowHandle[Any, Any]) -> int:
    return len((await handle.fetch_history()).events)


async def waiting(handle: WorkflowHandle[Any, Any]) -> int:
    """Wait until the saga only waits for its reply; return its history length then.

    The participant sees the command before the activity that sent it has completed, so the
    history still grows by a few events after ``commanded``.
    """
    for _ in range(200):
        raw = (await handle.describe()).raw_description
        if not raw.pending_activities and not raw.HasField("pending_workflow_task"):
            length = await history_length(handle)
            await asyncio.sleep(0.2)
            if await history_length(handle) == length:
                return length
        await asyncio.sleep(0.05)
    raise AssertionError("the saga never settled to wait for its reply")


def body(correlation: str, token: str | None = None, **fields: Any) -> dict[str, Any]:
    return {
        "correlation_id": correlation,
        "token": SIGNER.token(correlation) if token is None else token,
        "ok": True,
        **fields,
    }


async def raw(url: str, request: bytes, wait: float = 10) -> bytes:
    """Send bytes as they are and read the status line (for what httpx will not send)."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(request)
    await writer.drain()
    try:
        return await asyncio.wait_for(reader.readline(), wait)
    finally:
        writer.close()


async def test_a_positive_reply_completes_the_step_with_its_data(client: Client) -> None:
    handle, run = await start(client, c="slow")  # c takes a while: the saga is still open
    await commanded(run)
    correlation = f"{handle.id}:b"  # the command's Idempotency-Key
    await handle.execute_update(UPDATE, Reply(correlation_id=correlation, data={"id": "shp-77"}))
    with pytest.raises(WorkflowUpdateFailedError) as duplicate:
        await handle.execute_update(UPDATE, Reply(correlation_id=correlation, ok=False))
    assert "duplicate" in str(duplicate.value.cause)
    with pytest.raises(WorkflowUpdateFailedError) as unexpected:
        await handle.execute_update(UPDATE, Reply(correlation_id=f"{handle.id}:zz"))
    assert "no step waits" in str(unexpected.value.cause)
    result = await outcome(handle)
    assert result.status is SagaStatus.COMPLETED
    assert result.report is not None and result.report.outputs["b"] == {"id": "shp-77"}
    assert [p for p, _ in CALLS[run]] == ["/a", "/b", "/c"]


async def test_a_negative_reply_fails_the_step_and_compensates(client: Client) -> None:
    handle, run = await start(client)
    await commanded(run)
    await handle.execute_update(
        UPDATE, Reply(correlation_id=f"{handle.id}:b", ok=False, reason="address unknown")
    )
    result = await outcome(handle)
    assert result.status is SagaStatus.COMPENSATED
    assert result.report is not None and result.report.failed_step == "b"
    assert "ReplyNegative: address unknown" in (result.report.error or "")
    assert [p for p, _ in CALLS[run]] == ["/a", "/b", "/b/undo", "/a/undo"]


async def test_no_reply_in_time_fails_the_step_and_a_late_one_is_refused(
    client: Client, endpoint: str
) -> None:
    handle, run = await start(client)
    result = await outcome(handle)
    assert result.status is SagaStatus.COMPENSATED
    assert result.report is not None and "ReplyTimeout" in (result.report.error or "")
    state = await handle.query("saga_state", result_type=SagaState)
    assert state.steps[1].status is StepStatus.COMPENSATED
    async with httpx.AsyncClient() as http:
        late = await http.post(f"{endpoint}/replies", json=body(f"{handle.id}:b"))
    assert late.status_code == 410  # the saga is over: do not retry
    assert [p for p, _ in CALLS[run]] == ["/a", "/b", "/b/undo", "/a/undo"]


async def test_a_forged_reply_is_refused_and_never_reaches_the_saga(
    client: Client, endpoint: str
) -> None:
    handle, run = await start(client, PATIENT, c="slow")
    await commanded(run)
    correlation = f"{handle.id}:b"
    before = await waiting(handle)
    async with httpx.AsyncClient() as http:
        no_token = {k: v for k, v in body(correlation).items() if k != "token"}
        forged = [
            await http.post(f"{endpoint}/replies", json=no_token),
            await http.post(f"{endpoint}/replies", json=body(correlation, token="guess")),
            # A token is bound to its correlation id: another step's token does not open this one.
            await http.post(
                f"{endpoint}/replies",
                json=body(correlation, token=SIGNER.token(f"{handle.id}:a"), data={"id": "X"}),
            ),
            await http.post(f"{endpoint}/replies", json=body(correlation, token="guess", ok=False)),
            # A non-ASCII token: 401; a lone surrogate (JSON allows it): 400. Never a 500.
            await http.post(f"{endpoint}/replies", json=body(correlation, token="t\u00f6k\u00e9n")),
            await http.post(
                f"{endpoint}/replies",
                content=json.dumps(body(correlation, token="\ud800")).encode(),
                headers={"content-type": "application/json"},
            ),
        ]
        assert [r.status_code for r in forged] == [400, 401, 401, 401, 401, 400]
        assert all("Traceback" not in r.text for r in forged)
        assert await history_length(handle) == before
        state = await handle.query("saga_state", result_type=SagaState)
        assert state.steps[1].status is StepStatus.RUNNING

        genuine = await http.post(f"{endpoint}/replies", json=body(correlation, data={"id": "b-1"}))
        assert genuine.status_code == 202, genuine.text
        again = await http.post(f"{endpoint}/replies", json=body(correlation, data={"id": "b-2"}))
        assert again.status_code == 409  # a duplicate: do not retry
    result = await outcome(handle)
    assert result.status is SagaStatus.COMPLETED
    assert result.report is not None and result.report.outputs["b"] == {"id": "b-1"}


async def test_a_flood_of_replies_does_not_grow_the_sagas_history(
    client: Client, endpoint: str
) -> None:
    handle, run = await start(client, PATIENT)
    await commanded(run)
    correlation = f"{handle.id}:b"
    before = await waiting(handle)
    big = {"blob": "x" * 200_000}  # over the 64 KiB reply limit, under the body limit
    async with httpx.AsyncClient(timeout=30) as http:
        oversized = await asyncio.gather(
            *(http.post(f"{endpoint}/replies", json=body(correlation, data=big)) for _ in range(30))
        )
        unexpected = await asyncio.gather(
            *(http.post(f"{endpoint}/replies", json=body(f"{handle.id}:a")) for _ in range(30))
        )
        assert {r.status_code for r in oversized} == {413}
        # participants.md: 409 not awaited; 503 when Temporal did not take it for now (it
        # limits the updates in flight per saga, so part of a flood may meet it): retry. Retried,
        # every one of them ends 409.
        assert {r.status_code for r in unexpected} <= {409, 503}
        for answer in unexpected:
            for _ in range(20):
                if answer.status_code != 503:
                    break
                await asyncio.sleep(0.5)
                answer = await http.post(f"{endpoint}/replies", json=body(f"{handle.id}:a"))
            assert answer.status_code == 409, answer.text
        assert await history_length(handle) == before  # refused replies are not written
        assert (await http.get(f"{endpoint}/healthz")).status_code == 200
        done = await http.post(f"{endpoint}/replies", json=body(correlation))
        assert done.status_code == 202
    assert (await outcome(handle)).status is SagaStatus.COMPLETED


async def test_malformed_slow_and_oversized_requests_get_clear_answers(
    client: Client, endpoint: str
) -> None:
    unknown = f"NoSuchSaga-{uuid.uuid4().hex[:6]}:b"
    async with httpx.AsyncClient(timeout=30) as http:
        url = f"{endpoint}/replies"
        not_json = await http.post(url, content=b"{nope")
        deep = await http.post(url, content=b"[" * 100_000 + b"]" * 100_000)
        huge = await http.post(url, content=b" " * 2_000_000)
        bad_ok = await http.post(url, json={**body(unknown), "ok": "yes"})
        stranger = await http.post(url, json=body(unknown, token="x" * 43))
        finished = await http.post(url, json=body(unknown))  # a valid token, no such saga
        accents = await http.post(url, json={"correlation_id": "é" * 5})
    assert not_json.status_code == 400 and "not JSON" in not_json.json()["error"]
    assert deep.status_code == 400 and "deeply" in deep.json()["error"]
    assert huge.status_code == 413
    assert bad_ok.status_code == 400 and "ok" in bad_ok.json()["error"]
    assert stranger.status_code == 401 and "NoSuchSaga" not in stranger.text
    assert finished.status_code == 410
    assert accents.status_code == 400 and accents.json()["error"]  # a whole JSON answer

    deep_small = json.dumps(body(unknown, data={"d": json.loads("[" * 100 + "]" * 100)}))
    async with httpx.AsyncClient() as http:
        too_deep = await http.post(url, content=deep_small.encode())
    assert too_deep.status_code == 400

    negative = await raw(
        endpoint, b"POST /replies HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n"
    )
    assert negative.split()[1] == b"400"
    letters = await raw(
        endpoint, b"POST /replies HTTP/1.1\r\nHost: x\r\nContent-Length: ab\r\n\r\n"
    )
    assert letters.split()[1] == b"400"
    long_header = b"POST /replies HTTP/1.1\r\nHost: x\r\nX-Long: " + b"a" * 70_000 + b"\r\n\r\n"
    assert (await raw(endpoint, long_header)).split()[1].startswith(b"4")
    slow = await raw(
        endpoint, b"POST /replies HTTP/1.1\r\nHost: x\r\nContent-Length: 50\r\n\r\n{", wait=15
    )
    assert slow.split()[1] == b"408"
    async with httpx.AsyncClient() as http:
        assert (await http.get(f"{endpoint}/healthz")).status_code == 200  # still serving


def test_the_cli_reply_names_what_is_wrong(stack: Stack) -> None:
    listed = cli("reply", "OrderSaga-x", "--step", "b", "--data", "[1]", address=stack.address)
    assert listed.returncode == 2 and "must be a JSON object" in listed.stderr
    newline = cli("reply", "Order\nSaga", "--step", "b", address=stack.address)
    assert newline.returncode == 2 and "control characters" in newline.stderr


async def test_the_demo_hotel_confirms_asynchronously_through_the_reply_endpoint(
    stack: Stack, key: str
) -> None:
    handle = await start_saga(stack.client, TRIP, trip(key), task_queue=TASK_QUEUE)
    result = await outcome(handle)
    assert result.status is SagaStatus.COMPLETED
    assert result.report is not None
    assert result.report.outputs["book-hotel"]["trip_id"] == key
    # The hotel answered 202, then its outbox sent the confirmation to a worker's reply
    # endpoint, which took it (HTTP 2xx): the step's output came with it.
    with sqlite3.connect(stack.tmp / "svc" / "hotels.sqlite3") as db:
        sent = db.execute(
            "SELECT done, outcome FROM sagaloom_outbox WHERE correlation_id = ?",
            (f"{handle.id}:book-hotel",),
        ).fetchall()
    assert len(sent) == 1 and sent[0][0] and sent[0][1].startswith("HTTP 2"), sent
    state = await stack.state("hotels")
    assert [e["op"] for e in state["log"] if e["key"] == key] == ["do"]


async def test_temporal_too_slow_for_the_update_is_a_503_retry_later() -> None:
    """Before: ``WorkflowUpdateRPCTimeoutOrCancelledError`` escaped as a 500 with a traceback."""

    async def slow(reply: Reply) -> None:
        raise WorkflowUpdateRPCTimeoutOrCancelledError()

    address = f"127.0.0.1:{free_port()}"
    server = WorkerEndpoint(address, slow, SIGNER)
    await server.start()
    try:
        async with httpx.AsyncClient() as http:
            answer = await http.post(f"http://{address}/replies", json=body("Saga-x:b"))
    finally:
        await server.stop()
    assert answer.status_code == 503, answer.text
    assert "retry later" in answer.json()["error"]
