"""The order saga end to end: real dev server, real worker processes, real participants."""

from __future__ import annotations

import pytest
from temporalio.client import WorkflowExecutionStatus

from sagaloom import SAGA_STATUS, SagaState, SagaStatus, StepStatus
from sagaloom.client import list_query, list_sagas, outcome, start_saga
from tests._helpers import TASK_QUEUE, Stack, order
from workflows.order import ORDER

pytestmark = pytest.mark.integration
SERVICES = ["inventory", "payment", "shipping"]
STEPS = ["reserve-stock", "charge-payment", "create-shipment"]


async def test_happy_path_completes_and_every_effect_stands(stack: Stack, key: str) -> None:
    handle = await start_saga(stack.client, ORDER, order(key), task_queue=TASK_QUEUE)
    result = await outcome(handle)

    assert result.status is SagaStatus.COMPLETED
    assert result.report is not None
    assert list(result.report.outputs) == STEPS
    assert result.report.outputs["charge-payment"]["order_id"] == key
    for service in SERVICES:
        assert await stack.record(service, key) == "active"
    state = await handle.query("saga_state", result_type=SagaState)
    assert [s.status for s in state.steps] == [StepStatus.DONE] * 3
    description = await handle.describe()
    assert description.status is WorkflowExecutionStatus.COMPLETED
    # The happy path writes no SagaStatus (no visibility write of its own): the execution
    # status says Completed, and `saga list --status completed` finds it by that.
    assert description.typed_search_attributes.get(SAGA_STATUS) is None
    [row] = await list_sagas(stack.client, f'{list_query("completed")} AND SagaKey = "{key}"', 5)
    assert row.status == "COMPLETED" and row.workflow_id == handle.id
    assert not await list_sagas(stack.client, f'{list_query("running")} AND SagaKey = "{key}"', 5)


@pytest.mark.parametrize("failing", [1, 2, 3])
async def test_failure_at_step_k_compensates_steps_before_it_in_reverse(
    stack: Stack, key: str, failing: int
) -> None:
    await stack.fault(SERVICES[failing - 1], op="do", match=key, mode="reject", status=409)
    handle = await start_saga(stack.client, ORDER, order(key), task_queue=TASK_QUEUE)
    result = await outcome(handle)

    assert result.status is SagaStatus.COMPENSATED
    assert result.report is not None
    assert result.report.failed_step == STEPS[failing - 1]
    undone = [c.step for c in result.report.compensations]
    assert undone == list(reversed(STEPS[: failing - 1]))
    assert all(c.ok for c in result.report.compensations)
    # The participants' own stores: steps 1..k-1 applied then undone, k.. never applied.
    for index, service in enumerate(SERVICES, 1):
        assert await stack.record(service, key) == ("undone" if index < failing else "absent")
    # Undone in reverse order, by the participants' clocks.
    undo_times = [
        next(e["at_ns"] for e in await stack.log(s, key) if e["op"] == "undo")
        for s in SERVICES[: failing - 1]
    ]
    assert undo_times == sorted(undo_times, reverse=True)
    # Visible as compensated, never as a plain completion.
    description = await handle.describe()
    assert description.status is WorkflowExecutionStatus.FAILED
    assert description.typed_search_attributes.get(SAGA_STATUS) == "COMPENSATED"


async def test_retryable_503_twice_then_ok_completes_without_double_charge(
    stack: Stack, key: str
) -> None:
    await stack.fault("payment", op="do", match=key, mode="error", status=503, times=2)
    handle = await start_saga(stack.client, ORDER, order(key), task_queue=TASK_QUEUE)
    result = await outcome(handle)

    assert result.status is SagaStatus.COMPLETED
    state = await handle.query("saga_state", result_type=SagaState)
    assert state.steps[1].attempts == 3
    charges = [e for e in await stack.log("payment", key) if e["op"] == "do"]
    assert len(charges) == 1
    assert (await stack.state("payment"))["counters"]["collected_cents"] >= 1_999


async def test_commit_then_dropped_connection_is_retried_without_double_effect(
    stack: Stack, key: str
) -> None:
    # The charge commits, the caller sees a broken connection and retries with the same key.
    await stack.fault("payment", op="do", match=key, mode="drop", times=1)
    result = await outcome(await start_saga(stack.client, ORDER, order(key), task_queue=TASK_QUEUE))

    assert result.status is SagaStatus.COMPLETED
    assert len([e for e in await stack.log("payment", key) if e["op"] == "do"]) == 1
    assert await stack.record("payment", key) == "active"


async def test_non_retryable_4xx_compensates_at_once(stack: Stack, key: str) -> None:
    handle = await start_saga(
        stack.client, ORDER, order(key, amount_cents=500_000), task_queue=TASK_QUEUE
    )
    result = await outcome(handle)

    assert result.status is SagaStatus.COMPENSATED
    assert result.report is not None
    assert result.report.failed_step == "charge-payment"
    assert "HTTP 402" in (result.report.error or "")
    state = await handle.query("saga_state", result_type=SagaState)
    assert state.steps[1].status is StepStatus.FAILED
    assert state.steps[1].attempts == 1  # not retried
    assert state.steps[0].status is StepStatus.COMPENSATED
    assert await stack.record("inventory", key) == "undone"
    assert await stack.record("payment", key) == "absent"
