"""Bad input is rejected at the client, before anything starts, with an error naming the field."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from temporalio.client import WorkflowExecutionStatus, WorkflowFailureError
from temporalio.exceptions import ApplicationError

from sagaloom import SAGA_INPUT_ERROR, SagaInputError, SagaReport
from sagaloom.client import start_saga
from tests._helpers import EXAMPLES, ROOT, TASK_QUEUE, Stack, cli, count_workflows, order
from workflows.order import ORDER

pytestmark = pytest.mark.integration


async def test_invalid_field_is_rejected_before_the_saga_starts(stack: Stack, key: str) -> None:
    with pytest.raises(SagaInputError) as caught:
        await start_saga(stack.client, ORDER, order(key, quantity=0), task_queue=TASK_QUEUE)
    assert [field for field, _ in caught.value.problems] == ["quantity"]
    assert "quantity" in str(caught.value)
    assert await count_workflows(stack.client, f'SagaKey = "{key}"') == 0


async def test_missing_and_mistyped_fields_are_all_named(stack: Stack, key: str) -> None:
    data = order(key, amount_cents="lots")
    del data["country"]
    with pytest.raises(SagaInputError) as caught:
        await start_saga(stack.client, ORDER, data, task_queue=TASK_QUEUE)
    assert sorted(field for field, _ in caught.value.problems) == ["amount_cents", "country"]


async def test_raw_sdk_start_with_bad_input_fails_cleanly_instead_of_wedging(
    stack: Stack, key: str
) -> None:
    # A client that skips sagaloom's validation: the workflow fails with a typed error at once
    # (no workflow-task retry loop, no worker crash).
    handle = await stack.client.start_workflow(
        "OrderSaga",
        {"order_id": key},
        id=f"raw-{key}",
        task_queue=TASK_QUEUE,
        result_type=SagaReport,
    )
    with pytest.raises(WorkflowFailureError) as caught:
        await asyncio.wait_for(handle.result(), 30)  # "at once": not a task retried for ever
    cause = caught.value.cause
    assert isinstance(cause, ApplicationError)
    assert cause.type == SAGA_INPUT_ERROR
    assert "customer" in cause.message and "sku" in cause.message
    assert (await handle.describe()).status is WorkflowExecutionStatus.FAILED


async def test_cli_rejects_bad_input_unknown_saga_and_invalid_json(stack: Stack, key: str) -> None:
    bad_field = cli(
        "start",
        "OrderSaga",
        "--input",
        json.dumps(order(key, country="NLD")),
        "--task-queue",
        TASK_QUEUE,
        address=stack.address,
    )
    assert bad_field.returncode == 2
    assert "country" in bad_field.stderr and "Traceback" not in bad_field.stderr

    unknown = cli("start", "NoSuchSaga", "--input", "{}", address=stack.address)
    assert unknown.returncode == 2
    assert "unknown saga 'NoSuchSaga'" in unknown.stderr and "OrderSaga" in unknown.stderr

    not_json = cli("start", "OrderSaga", "--input", "{order_id:", address=stack.address)
    assert not_json.returncode == 2
    assert "not valid JSON" in not_json.stderr

    assert await count_workflows(stack.client, f'SagaKey = "{key}"') == 0


async def test_cli_starts_a_saga_and_shows_its_step_table(stack: Stack, key: str) -> None:
    started = cli(
        "start",
        "OrderSaga",
        "--input",
        json.dumps(order(key)),
        "--wait",
        "--task-queue",
        TASK_QUEUE,
        address=stack.address,
    )
    assert started.returncode == 0, started.stderr
    assert f"OrderSaga-{key}" in started.stdout and "COMPLETED" in started.stdout
    assert f"/namespaces/default/workflows/OrderSaga-{key}" in started.stdout

    status = cli("status", f"OrderSaga-{key}", "--json", address=stack.address)
    assert status.returncode == 0, status.stderr
    state = json.loads(status.stdout)
    assert state["status"] == "COMPLETED"
    assert [s["name"] for s in state["steps"]] == [
        "reserve-stock",
        "charge-payment",
        "create-shipment",
    ]
    table = cli("status", f"OrderSaga-{key}", address=stack.address)
    assert "charge-payment" in table.stdout and "done" in table.stdout


def test_cli_input_from_a_file_or_stdin_and_clear_errors_for_bad_ids(
    stack: Stack, key: str, tmp_path: Path
) -> None:
    data = tmp_path / "order.json"
    data.write_text(json.dumps(order(f"{key}-file")))
    from_file = cli("start", "OrderSaga", "--input", f"@{data}", "--task-queue", TASK_QUEUE,
                    address=stack.address)  # fmt: skip
    assert from_file.returncode == 0, from_file.stderr
    assert f"OrderSaga-{key}-file" in from_file.stdout

    deep = cli("start", "OrderSaga", "--input", "[" * 60_000 + "]" * 60_000, address=stack.address)
    assert deep.returncode == 2 and "nested too deeply" in deep.stderr
    missing = cli("start", "OrderSaga", "--input", "@/no/such/file.json", address=stack.address)
    assert missing.returncode == 2 and "No such file" in missing.stderr
    for bad_id, says in (("", "empty"), ("x" * 2000, "the limit is 1000"), ("a\nb", "control")):
        run = cli("start", "OrderSaga", "--input", "{}", "--id", bad_id, address=stack.address)
        assert run.returncode == 2 and says in run.stderr and "Traceback" not in run.stderr
    for tool in ("show", "cancel"):
        run = cli(tool, "a\nb", address=stack.address)
        assert run.returncode == 2 and "control characters" in run.stderr
    for tool in ("show", "cancel", "reply"):  # Temporal's refusal: one line naming the saga
        extra = ("--step", "x") if tool == "reply" else ()
        run = cli(tool, f"NoSuchSaga-{key}", *extra, address=stack.address)
        assert run.returncode == 2 and "Traceback" not in run.stderr, run.stderr
        assert f"saga {tool}: error: saga 'NoSuchSaga-{key}'" in run.stderr, run.stderr


def test_cli_input_from_stdin(stack: Stack, key: str) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "sagaloom", "start", "OrderSaga", "--input", "-",
         "--task-queue", TASK_QUEUE, "--address", stack.address],
        input=json.dumps(order(f"{key}-stdin")),
        env={**os.environ, "SAGALOOM_SAGA_MODULES": ",".join(EXAMPLES)},
        capture_output=True, text=True, cwd=ROOT, timeout=60,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert f"OrderSaga-{key}-stdin" in run.stdout
