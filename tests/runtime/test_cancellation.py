"""Cancelling a running saga compensates its started steps, then the workflow ends CANCELED."""

from __future__ import annotations

import asyncio

import pytest
from temporalio.client import WorkflowExecutionStatus

from sagaloom import SAGA_STATUS, SagaState, SagaStatus, StepStatus
from sagaloom.client import outcome, start_saga
from tests._helpers import TASK_QUEUE, Stack, order, trip, wait_for_step
from workflows.order import ORDER
from workflows.trip import TRIP

pytestmark = pytest.mark.integration


async def test_cancel_while_an_activity_runs(stack: Stack, key: str) -> None:
    # The shipment call hangs for 6 s; cancel while it is in flight.
    await stack.fault("shipping", op="do", match=key, mode="slow", delay=6.0, times=1)
    handle = await start_saga(stack.client, ORDER, order(key), task_queue=TASK_QUEUE)
    await wait_for_step(handle, "create-shipment", StepStatus.RUNNING)
    await handle.cancel()
    result = await outcome(handle)

    assert result.status is SagaStatus.CANCELED
    description = await handle.describe()
    assert description.status is WorkflowExecutionStatus.CANCELED
    assert description.typed_search_attributes.get(SAGA_STATUS) == "CANCELED"
    state = await handle.query("saga_state", result_type=SagaState)
    assert state.status is SagaStatus.CANCELED
    assert [s.status for s in state.steps] == [StepStatus.COMPENSATED] * 3
    assert await stack.record("inventory", key) == "undone"
    assert await stack.record("payment", key) == "undone"
    # The in-flight shipment request lands after its compensation left a tombstone: it must
    # not take effect. Wait for the slow request to finish, then look again.
    await asyncio.sleep(6.5)
    assert await stack.record("shipping", key) == "absent"
    assert not [e for e in await stack.log("shipping", key) if e["op"] == "do"]


async def test_cancel_while_the_saga_waits_on_a_timer(stack: Stack, key: str) -> None:
    handle = await start_saga(
        stack.client, TRIP, trip(key, cooling_off_seconds=3600), task_queue=TASK_QUEUE
    )
    await wait_for_step(handle, "cooling-off", StepStatus.RUNNING)
    await handle.cancel()
    result = await outcome(handle)

    assert result.status is SagaStatus.CANCELED
    assert (await handle.describe()).status is WorkflowExecutionStatus.CANCELED
    state = await handle.query("saga_state", result_type=SagaState)
    assert [s.status for s in state.steps] == [
        StepStatus.COMPENSATED,
        StepStatus.COMPENSATED,
        StepStatus.FAILED,
        StepStatus.PENDING,
    ]
    assert await stack.record("flights", key) == "undone"
    assert await stack.record("hotels", key) == "undone"
    assert await stack.record("cars", key) == "absent"
    flight_undo = next(e for e in await stack.log("flights", key) if e["op"] == "undo")
    hotel_undo = next(e for e in await stack.log("hotels", key) if e["op"] == "undo")
    assert hotel_undo["at_ns"] < flight_undo["at_ns"]
