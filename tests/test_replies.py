"""Asynchronous participants: a step's command, then the participant's reply (a signal)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from temporalio.client import Client
from temporalio.worker import Worker

from sagaloom import Reply, SagaState, SagaStatus, StepStatus
from sagaloom.client import outcome, start_saga
from tests._helpers import TASK_QUEUE, Stack, trip
from tests._sagas import REPLYING, ReplyingSaga
from tests._scripted import CALLS, scripted
from workflows.trip import TRIP

pytestmark = pytest.mark.integration
QUEUE = "replies"


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def client(stack: Stack) -> AsyncIterator[Client]:
    async with Worker(
        stack.client, task_queue=QUEUE, workflows=[ReplyingSaga], activities=[scripted]
    ):
        yield stack.client


async def start(client: Client, **steps: str) -> tuple[Any, str]:
    run = uuid.uuid4().hex[:8]
    plan = {"run": run, "steps": steps}
    return await start_saga(client, REPLYING, plan, task_queue=QUEUE), run


async def commanded(run: str, path: str = "/b") -> None:
    for _ in range(200):
        if path in [p for p, _ in CALLS[run]]:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{path} was never called")


async def test_a_positive_reply_completes_the_step_with_its_data(client: Client) -> None:
    handle, run = await start(client)
    await commanded(run)
    correlation = f"{handle.id}:b"  # the command's Idempotency-Key
    await handle.signal("reply", Reply(correlation_id=correlation, data={"id": "shp-77"}))
    await handle.signal("reply", Reply(correlation_id=correlation, ok=False))  # duplicate: ignored
    await handle.signal("reply", Reply(correlation_id=f"{handle.id}:zz"))  # unknown: ignored
    result = await outcome(handle)
    assert result.status is SagaStatus.COMPLETED
    assert result.report is not None and result.report.outputs["b"] == {"id": "shp-77"}
    assert [p for p, _ in CALLS[run]] == ["/a", "/b", "/c"]


async def test_a_negative_reply_fails_the_step_and_compensates(client: Client) -> None:
    handle, run = await start(client)
    await commanded(run)
    await handle.signal(
        "reply", Reply(correlation_id=f"{handle.id}:b", ok=False, reason="address unknown")
    )
    result = await outcome(handle)
    assert result.status is SagaStatus.COMPENSATED
    assert result.report is not None and result.report.failed_step == "b"
    assert "ReplyNegative: address unknown" in (result.report.error or "")
    assert [p for p, _ in CALLS[run]] == ["/a", "/b", "/b/undo", "/a/undo"]


async def test_no_reply_in_time_fails_the_step_and_compensates(client: Client) -> None:
    handle, run = await start(client)
    result = await outcome(handle)
    assert result.status is SagaStatus.COMPENSATED
    assert result.report is not None and "ReplyTimeout" in (result.report.error or "")
    state = await handle.query("saga_state", result_type=SagaState)
    assert state.steps[1].status is StepStatus.COMPENSATED
    # A reply after the fact changes nothing.
    assert [p for p, _ in CALLS[run]] == ["/a", "/b", "/b/undo", "/a/undo"]


async def test_the_demo_hotel_confirms_asynchronously_through_the_reply_endpoint(
    stack: Stack, key: str
) -> None:
    handle = await start_saga(stack.client, TRIP, trip(key), task_queue=TASK_QUEUE)
    result = await outcome(handle)
    assert result.status is SagaStatus.COMPLETED
    assert result.report is not None
    assert result.report.outputs["book-hotel"]["trip_id"] == key
    state = await handle.query("saga_state", result_type=SagaState)
    hotel = state.steps[1]
    assert hotel.started_at and hotel.ended_at
    assert (hotel.ended_at - hotel.started_at).total_seconds() >= 0.3  # waited for the reply
