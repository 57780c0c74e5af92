"""A business key runs once (docs/operating.md, "Starting sagas"): a second start of a key whose
saga closed is refused with an error naming the run, never a silent replay of its answers."""

from __future__ import annotations

import asyncio
import json

import pytest
from temporalio.exceptions import WorkflowAlreadyStartedError

from sagaloom import SagaStatus, StepStatus
from sagaloom.client import SagaAlreadyRan, outcome, start_saga
from tests._helpers import TASK_QUEUE as Q
from tests._helpers import Stack, cli, count_workflows, order, wait_for_step
from workflows.order import ORDER

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("first", ["compensated", "completed"])
async def test_a_second_start_of_a_closed_key_is_refused_and_names_the_run(
    stack: Stack, key: str, first: str
) -> None:
    country = "AQ" if first == "compensated" else "NL"  # the shipper refuses AQ
    handle = await start_saga(stack.client, ORDER, order(key, country=country), task_queue=Q)
    ended = await outcome(handle)
    assert ended.status.value == first.upper()
    run_id = (await handle.describe()).run_id

    with pytest.raises(SagaAlreadyRan) as refused:
        await start_saga(stack.client, ORDER, order(key, country="DE"), task_queue=Q)
    said = str(refused.value)
    assert handle.id in said and run_id in said and first.upper() in said
    assert "redrive" in said and "new key" in said
    assert refused.value.status.value == first.upper()
    assert await count_workflows(stack.client, f'WorkflowId = "{handle.id}"') == 1
    # the participants saw one run: the shipper never got the corrected country
    assert (await outcome(stack.client.get_workflow_handle(handle.id))).status is ended.status

    run = await asyncio.to_thread(
        cli,
        "start", "OrderSaga", "--task-queue", Q, "--input", json.dumps(order(key, country="DE")),
        address=stack.address,
    )  # fmt: skip
    assert run.returncode == 2, run.stdout + run.stderr
    assert "already ran" in run.stderr and "Traceback" not in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1


async def test_answer_early_on_a_closed_key_answers_from_its_run(stack: Stack, key: str) -> None:
    done = await start_saga(stack.client, ORDER, order(f"{key}-ok"), task_queue=Q)
    assert (await outcome(done)).status is SagaStatus.COMPLETED
    again = await start_saga(
        stack.client, ORDER, order(f"{key}-ok"), task_queue=Q, wait_for="charge-payment"
    )
    assert again.ok and again.output is not None and again.handle.id == done.id

    undone = await start_saga(stack.client, ORDER, order(f"{key}-aq", country="AQ"), task_queue=Q)
    assert (await outcome(undone)).status is SagaStatus.COMPENSATED
    retry = await start_saga(
        stack.client,
        ORDER,
        order(f"{key}-aq", country="NL"),
        task_queue=Q,
        wait_for="create-shipment",
    )
    assert retry.ended is not None and retry.ended.status is SagaStatus.COMPENSATED
    assert "AQ" in (retry.ended.error or "")  # the first run's answer, said as such
    assert await count_workflows(stack.client, f'WorkflowId = "{undone.id}"') == 1


async def test_a_second_start_of_a_running_key_says_it_is_running(stack: Stack, key: str) -> None:
    await stack.fault("payment", op="do", match=key, mode="slow", delay=3.0, times=1)
    handle = await start_saga(stack.client, ORDER, order(key), task_queue=Q)
    await wait_for_step(handle, "charge-payment", StepStatus.RUNNING)
    with pytest.raises(WorkflowAlreadyStartedError) as running:
        await start_saga(stack.client, ORDER, order(key), task_queue=Q)
    assert not isinstance(running.value, SagaAlreadyRan)
    assert (await outcome(handle)).status is SagaStatus.COMPLETED
