"""Rules at their edges, each with a test that a one-line mutation of the engine would fail:
a step that used its whole time budget is undone; a dependency's undo waits for the slow undo of
the step that depends on it; the demo participants replay a repeated key byte for byte."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio
from temporalio.client import Client
from temporalio.worker import Worker

from sagaloom import Saga, SagaStatus
from sagaloom.client import outcome, start_saga
from tests._helpers import Stack
from tests._sagas import (
    CANCEL_RULES,
    LOCAL_TIMEOUT_RULES,
    PARALLEL_DIAMOND,
    TIMEOUT_RULES,
    CancelRulesSaga,
    LocalTimeoutRulesSaga,
    ParallelDiamondSaga,
    TimeoutRulesSaga,
)
from tests._scripted import CALLS, ENDED, STARTED, scripted

pytestmark = pytest.mark.integration
QUEUE = "rule-edges"


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def client(stack: Stack) -> AsyncIterator[Client]:
    async with Worker(
        stack.client,
        task_queue=QUEUE,
        workflows=[TimeoutRulesSaga, LocalTimeoutRulesSaga, ParallelDiamondSaga, CancelRulesSaga],
        activities=[scripted],
    ):
        yield stack.client


async def run(client: Client, saga: Saga[Any], **steps: str) -> tuple[Any, str]:
    run_id = uuid.uuid4().hex[:8]
    plan = {"run": run_id, "steps": steps}
    result = await outcome(await start_saga(client, saga, plan, task_queue=QUEUE))
    return result, run_id


@pytest.mark.parametrize(
    "saga", [TIMEOUT_RULES, LOCAL_TIMEOUT_RULES], ids=["activities", "local-activities"]
)
async def test_a_step_that_used_up_its_time_budget_is_undone(
    client: Client, saga: Saga[Any]
) -> None:
    # b's participant takes 2 s; the step has 1 s in all: it times out, and may have taken
    # effect — so, unlike a refused step, it is compensated.
    result, run_id = await run(client, saga, b="slow")
    calls = [p for p, _ in CALLS[run_id]]
    assert result.status is SagaStatus.COMPENSATED
    assert result.report is not None and result.report.failed_step == "b"
    assert "timed out" in (result.report.error or "")
    assert calls[-2:] == ["/b/undo", "/a/undo"]
    assert [c.step for c in result.report.compensations] == ["b", "a"]


async def test_a_dependency_is_undone_only_after_its_dependents_undos_have_finished(
    client: Client,
) -> None:
    # a, then b and c in parallel, then d, which is refused. b's undo takes 2 s, c's is instant:
    # a's undo must wait for b's to *finish*, not merely to start.
    result, run_id = await run(client, PARALLEL_DIAMOND, d="reject", **{"undo-b": "slow"})
    assert result.status is SagaStatus.COMPENSATED
    started = dict(STARTED[run_id])
    ended = dict(ENDED[run_id])
    assert ended["/b/undo"] - started["/b/undo"] >= 1.5
    assert started["/a/undo"] >= ended["/b/undo"]
    assert started["/a/undo"] >= ended["/c/undo"]
    assert abs(started["/b/undo"] - started["/c/undo"]) < 1.0  # independent undos at once


async def test_a_cancel_that_arrives_while_compensating_does_not_cut_the_undo_short(
    client: Client,
) -> None:
    # d is refused; c's undo takes 2 s; the saga is cancelled in the middle of it (a 1 s
    # heartbeat would carry the cancellation to the call). The undo of c finishes and b and a are
    # still undone: compensations run where cancellation cannot reach.
    run_id = uuid.uuid4().hex[:8]
    plan = {"run": run_id, "steps": {"d": "reject", "undo-c": "slow"}}
    handle = await start_saga(client, CANCEL_RULES, plan, task_queue=QUEUE)
    for _ in range(200):
        if "/c/undo" in dict(STARTED[run_id]):
            break
        await asyncio.sleep(0.05)
    await handle.cancel()
    result = await outcome(handle)
    calls = [p for p, _ in CALLS[run_id]]
    assert calls[-3:] == ["/c/undo", "/b/undo", "/a/undo"], calls
    assert "/c/undo" in dict(ENDED[run_id])
    assert result.status is SagaStatus.COMPENSATED
    assert result.report is not None
    assert [c.step for c in result.report.compensations if c.ok] == ["c", "b", "a"]


async def test_the_demo_participants_replay_a_repeated_key_byte_for_byte(
    stack: Stack, key: str
) -> None:
    url = f"{stack.services['payment']}/charges"
    idem = {"Idempotency-Key": f"OrderSaga-{key}:charge-payment"}
    first_body = {"order_id": key, "customer": "ada", "amount_cents": 1_000}
    other_body = {"order_id": key, "customer": "ada", "amount_cents": 9_000}
    async with httpx.AsyncClient() as http:
        before = (await http.get(f"{stack.services['payment']}/_admin/state")).json()
        first = await http.post(url, json=first_body, headers=idem)
        again = await http.post(url, json=first_body, headers=idem)
        changed = await http.post(url, json=other_body, headers=idem)
        after = (await http.get(f"{stack.services['payment']}/_admin/state")).json()
    assert first.status_code == 201
    assert again.status_code == changed.status_code == 201
    assert again.content == first.content and changed.content == first.content
    applied = [e for e in after["log"] if e["key"] == key and e["op"] == "do"]
    assert len(applied) == 1 and applied[0]["idem_key"] == idem["Idempotency-Key"]
    collected = after["counters"].get("collected_cents", 0) - before["counters"].get(
        "collected_cents", 0
    )
    assert collected == 1_000  # the repeat with another amount applied nothing
    record = next(r for r in after["records"] if r["key"] == key)
    assert json.loads(json.dumps(record["payload"]))["amount_cents"] == 1_000


async def test_the_demo_participants_refuse_bad_and_oversized_bodies(stack: Stack) -> None:
    url = f"{stack.services['payment']}/charges"
    headers = {"Idempotency-Key": "probe:charge-payment"}
    async with httpx.AsyncClient() as http:
        huge = await http.post(url, content=b"{" + b" " * 300_000 + b"}", headers=headers)
        not_json = await http.post(url, content=b"{nope", headers=headers)
        deep = await http.post(url, content=b"[" * 50_000 + b"]" * 50_000, headers=headers)
        alive = await http.get(f"{stack.services['payment']}/health")
    assert huge.status_code == 413
    assert not_json.status_code == 400 and deep.status_code == 400
    assert alive.status_code == 200
    # After a refusal the participant closes the connection and says so: a client reusing its
    # connections never sends the next request into a closed one (it was 1 CI run in 3).
    assert huge.headers.get("connection") == "close"
    async with httpx.AsyncClient() as http:
        for _ in range(20):
            big = await http.post(url, content=b"{" + b" " * 300_000 + b"}", headers=headers)
            after = await http.get(f"{stack.services['payment']}/health")
            assert (big.status_code, after.status_code) == (413, 200)
