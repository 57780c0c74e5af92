"""Answer-early starts: ``start_saga(..., wait_for=STEP)`` and ``saga start --wait-for STEP``.

A request handler starts the order saga and answers "order accepted" once the payment is
charged, while shipping goes on; one round trip (Update-with-Start) against real workers.
"""

from __future__ import annotations

import asyncio
import json

import pytest
from temporalio.client import WorkflowExecutionStatus

from sagaloom import SagaInputError, SagaStatus
from sagaloom.client import outcome, start_saga
from tests._helpers import TASK_QUEUE, Stack, cli, count_workflows, order
from workflows.order import ORDER

pytestmark = pytest.mark.integration


async def test_the_answer_arrives_when_the_step_is_done_and_the_saga_goes_on(
    stack: Stack, key: str
) -> None:
    await stack.fault("shipping", op="do", match=key, mode="slow", delay=3.0, times=1)
    answer = await asyncio.wait_for(
        start_saga(
            stack.client, ORDER, order(key), task_queue=TASK_QUEUE, wait_for="charge-payment"
        ),
        20,
    )
    assert answer.ok and answer.ended is None
    assert answer.output["order_id"] == key and answer.output["id"]  # the payment's record
    # The caller has its answer while the shipment is still being created.
    assert (await answer.handle.describe()).status is WorkflowExecutionStatus.RUNNING
    result = await asyncio.wait_for(outcome(answer.handle), 30)
    assert result.status is SagaStatus.COMPLETED
    assert result.report is not None
    assert result.report.outputs["charge-payment"] == answer.output


async def test_a_failure_before_the_step_answers_with_the_compensated_report(
    stack: Stack, key: str
) -> None:
    await stack.fault("payment", op="do", match=key, mode="reject", status=402, times=1)
    answer = await asyncio.wait_for(
        start_saga(
            stack.client, ORDER, order(key), task_queue=TASK_QUEUE, wait_for="create-shipment"
        ),
        30,
    )
    assert not answer.ok and answer.output is None
    assert answer.ended is not None and answer.ended.status is SagaStatus.COMPENSATED
    report = answer.ended.report
    assert report is not None and report.failed_step == "charge-payment"
    assert "402" in (report.error or "")
    # The answer came once the compensation was done: the stock is released already.
    assert [c.step for c in report.compensations if c.ok] == ["reserve-stock"]
    assert (await stack.record("inventory", key)) == "undone"
    assert (await outcome(answer.handle)).status is SagaStatus.COMPENSATED


async def test_a_duplicate_start_attaches_to_the_running_saga(stack: Stack, key: str) -> None:
    await stack.fault("payment", op="do", match=key, mode="slow", delay=2.0, times=1)
    first, second = await asyncio.wait_for(
        asyncio.gather(
            *(
                start_saga(
                    stack.client,
                    ORDER,
                    order(key),
                    task_queue=TASK_QUEUE,
                    wait_for="charge-payment",
                )
                for _ in range(2)
            )
        ),
        30,
    )
    assert first.ok and second.ok
    assert first.handle.id == second.handle.id
    assert first.handle.result_run_id == second.handle.result_run_id
    assert first.output == second.output
    # One run, one charge: the second caller heard the first run's answer.
    assert await count_workflows(stack.client, f'SagaKey = "{key}"') == 1
    charges = [e for e in await stack.log("payment", key) if e["op"] == "do"]
    assert len(charges) == 1
    assert (await outcome(first.handle)).status is SagaStatus.COMPLETED
    # Asked again once it completed: the answer comes from that run's report, nothing runs again.
    again = await start_saga(
        stack.client, ORDER, order(key), task_queue=TASK_QUEUE, wait_for="charge-payment"
    )
    assert again.ok and again.output == first.output
    assert (await again.handle.describe()).run_id == first.handle.result_run_id
    assert await count_workflows(stack.client, f'SagaKey = "{key}"') == 1


async def test_an_unknown_step_is_refused_before_anything_starts(stack: Stack, key: str) -> None:
    with pytest.raises(SagaInputError) as raised:
        await start_saga(stack.client, ORDER, order(key), task_queue=TASK_QUEUE, wait_for="pay")
    assert "wait_for" in str(raised.value) and "charge-payment" in str(raised.value)
    assert await count_workflows(stack.client, f'SagaKey = "{key}"') == 0


async def test_the_cli_prints_the_step_output_or_the_failure(stack: Stack, key: str) -> None:
    ok = await asyncio.to_thread(
        cli,
        "start",
        "OrderSaga",
        "--input",
        json.dumps(order(key)),
        "--task-queue",
        TASK_QUEUE,
        "--wait-for",
        "charge-payment",
        address=stack.address,
    )
    assert ok.returncode == 0, ok.stderr
    printed = json.loads(ok.stdout)
    assert printed["step"] == "charge-payment" and printed["output"]["order_id"] == key
    failed = await asyncio.to_thread(
        cli,
        "start",
        "OrderSaga",
        "--input",
        json.dumps(order(f"{key}-aq", country="AQ")),
        "--task-queue",
        TASK_QUEUE,
        "--wait-for",
        "create-shipment",
        address=stack.address,
    )
    assert failed.returncode == 1
    assert json.loads(failed.stdout)["status"] == "COMPENSATED"
    unknown = await asyncio.to_thread(
        cli,
        "start",
        "OrderSaga",
        "--input",
        json.dumps(order(key)),
        "--wait-for",
        "nope",
        address=stack.address,
    )
    assert unknown.returncode != 0 and "--wait-for 'nope'" in unknown.stderr
