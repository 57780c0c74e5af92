"""Reading a saga with every worker down: its report for a finished saga, history otherwise."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import pytest

from sagaloom import SagaStatus, StepStatus
from sagaloom.client import outcome, start_saga
from sagaloom.worker import WorkerConfig, build_worker, load_sagas
from tests._helpers import EXAMPLES, Stack, cli, order, wait_for_step
from workflows.order import ORDER

pytestmark = pytest.mark.integration


async def test_show_status_and_list_work_with_no_worker_running(stack: Stack, key: str) -> None:
    queue = f"offline-{uuid.uuid4().hex[:6]}"
    config = WorkerConfig(task_queue=queue, services=stack.services)
    await stack.fault("payment", op="do", match=f"{key}-cancel", mode="slow", delay=3.0, times=1)
    async with build_worker(stack.client, load_sagas(EXAMPLES).values(), config=config):
        done = await start_saga(stack.client, ORDER, order(f"{key}-ok"), task_queue=queue)
        undone = await start_saga(
            stack.client, ORDER, order(f"{key}-aq", country="AQ"), task_queue=queue
        )
        cancelled = await start_saga(stack.client, ORDER, order(f"{key}-cancel"), task_queue=queue)
        await wait_for_step(cancelled, "charge-payment", StepStatus.RUNNING)
        await cancelled.cancel()
        results = [await outcome(h) for h in (done, undone, cancelled)]
    assert [r.status for r in results] == [
        SagaStatus.COMPLETED,
        SagaStatus.COMPENSATED,
        SagaStatus.CANCELED,
    ]
    # A saga started on a queue no worker polls: running, and nobody answers its query.
    waiting = await start_saga(stack.client, ORDER, order(f"{key}-wait"), task_queue=f"{queue}-x")

    def show(handle_id: str) -> dict[str, object]:
        run = cli("status", handle_id, "--json", address=stack.address)
        assert run.returncode == 0, run.stderr
        return dict(json.loads(run.stdout))

    ok, aq, gone = await asyncio.gather(
        *(asyncio.to_thread(show, h.id) for h in (done, undone, cancelled))
    )
    began = time.monotonic()
    pending = await asyncio.to_thread(show, waiting.id)
    # No worker polls its queue: history at once (before: a 10-second query timeout first).
    assert time.monotonic() - began < 5
    assert ok["source"] == "report" and ok["status"] == "COMPLETED"
    assert [s["status"] for s in ok["steps"]] == ["done"] * 3  # type: ignore[index, union-attr]
    assert aq["source"] == "report" and aq["status"] == "COMPENSATED"
    assert aq["failed_step"] == "create-shipment"
    assert [s["status"] for s in aq["steps"]] == ["compensated", "compensated", "failed"]  # type: ignore[index, union-attr]
    assert gone["source"] == "history" and gone["status"] == "CANCELED"
    steps = {s["name"]: s["status"] for s in gone["steps"]}  # type: ignore[union-attr]
    assert steps["reserve-stock"] == "compensated"
    assert pending["source"] == "history" and pending["status"] == "RUNNING"

    table = await asyncio.to_thread(cli, "show", undone.id, address=stack.address)
    assert table.returncode == 0 and "create-shipment" in table.stdout
    assert "compensated" in table.stdout and "Traceback" not in table.stderr
    listed = await asyncio.to_thread(
        cli, "list", "--status", "compensated", "--json", address=stack.address
    )
    assert undone.id in [row["workflow_id"] for row in json.loads(listed.stdout)]
