"""The fault-injection kit, as a user would apply it to their own saga's test."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
import pytest_asyncio

from sagaloom import SagaState, SagaStatus
from sagaloom.client import outcome, start_saga
from sagaloom.testing import Fault, FaultInjector
from sagaloom.worker import WorkerConfig, build_worker, load_sagas
from tests._helpers import EXAMPLES, Stack, order
from workflows.order import ORDER

pytestmark = pytest.mark.integration
INJECTOR = FaultInjector([])


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def queue(stack: Stack) -> AsyncIterator[str]:
    name = f"faults-{uuid.uuid4().hex[:6]}"
    worker = build_worker(
        stack.client,
        load_sagas(EXAMPLES).values(),
        config=WorkerConfig(task_queue=name, services=stack.services),
        interceptors=[INJECTOR],
    )
    async with worker:
        yield name


async def test_a_lost_reply_is_retried_and_the_charge_applies_once(
    stack: Stack, queue: str, key: str
) -> None:
    INJECTOR.faults[:] = [
        Fault("charge-payment", "lost_reply", attempts={1}, workflow_id=f"OrderSaga-{key}")
    ]
    handle = await start_saga(stack.client, ORDER, order(key), task_queue=queue)
    result = await outcome(handle)
    assert result.status is SagaStatus.COMPLETED
    assert INJECTOR.injected[("charge-payment", "lost_reply")] >= 1
    state = await handle.query("saga_state", result_type=SagaState)
    assert state.steps[1].attempts == 2
    assert len([e for e in await stack.log("payment", key) if e["op"] == "do"]) == 1


async def test_refusing_a_step_compensates_and_a_failing_undo_is_retried(
    stack: Stack, queue: str, key: str
) -> None:
    wid = f"OrderSaga-{key}"
    INJECTOR.faults[:] = [
        Fault("create-shipment", "refuse", workflow_id=wid),
        Fault("charge-payment:compensate", "fail", attempts={1}, workflow_id=wid),
    ]
    result = await outcome(await start_saga(stack.client, ORDER, order(key), task_queue=queue))
    assert result.status is SagaStatus.COMPENSATED
    assert result.report is not None and result.report.failed_step == "create-shipment"
    assert [c.step for c in result.report.compensations] == ["charge-payment", "reserve-stock"]
    assert await stack.record("payment", key) == "undone"
    assert await stack.record("shipping", key) == "absent"


async def test_a_delay_holds_the_step_back(stack: Stack, queue: str, key: str) -> None:
    INJECTOR.faults[:] = [
        Fault("reserve-stock", "delay", delay=timedelta(seconds=2), workflow_id=f"OrderSaga-{key}")
    ]
    handle = await start_saga(stack.client, ORDER, order(key), task_queue=queue)
    assert (await outcome(handle)).status is SagaStatus.COMPLETED
    state = await handle.query("saga_state", result_type=SagaState)
    first = state.steps[0]
    assert first.started_at and first.ended_at
    assert (first.ended_at - first.started_at).total_seconds() >= 2
