"""Every running saga shows where it is: its step table as the run's current details."""

from __future__ import annotations

import asyncio

import pytest
from temporalio.api.sdk.v1 import WorkflowMetadata

from sagaloom import SagaStatus, StepStatus
from sagaloom.client import list_query, list_sagas, outcome, start_saga
from tests._helpers import TASK_QUEUE, Stack, order, wait_for_step
from workflows.order import ORDER

pytestmark = pytest.mark.integration
METADATA = "__temporal_workflow_metadata"  # the SDK's built-in query, which the Web UI reads


async def test_a_running_saga_shows_its_current_step_in_its_details(stack: Stack, key: str) -> None:
    await stack.fault("payment", op="do", match=key, mode="slow", delay=2.0, times=1)
    handle = await start_saga(stack.client, ORDER, order(key), task_queue=TASK_QUEUE)
    await wait_for_step(handle, "charge-payment", StepStatus.RUNNING)
    live = (await handle.query(METADATA, result_type=WorkflowMetadata)).current_details
    assert f"**OrderSaga** · `{key}` — **RUNNING**" in live
    assert "1. **reserve-stock** — done · 1 try" in live
    assert "2. **charge-payment** — running" in live
    assert "3. **create-shipment** — pending" in live
    # Running, with no SagaStatus written: the running listing finds it by execution status.
    [row] = await list_sagas(stack.client, f'{list_query("running")} AND SagaKey = "{key}"', 5)
    assert row.status == "RUNNING" and row.workflow_id == handle.id
    result = await asyncio.wait_for(outcome(handle), 30)
    assert result.status is SagaStatus.COMPLETED
    # Finished: the details stay as the last table (the Web UI shows them on the run page).
    final = (await handle.query(METADATA, result_type=WorkflowMetadata)).current_details
    assert "— **COMPLETED**" in final and "3. **create-shipment** — done" in final
