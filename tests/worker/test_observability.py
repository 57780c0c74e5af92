"""Metrics, health endpoints, the CLI's list/show views and tracing, on the real stack."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import uuid
from collections.abc import Iterator

import httpx
import pytest

from sagaloom import SagaStatus
from sagaloom._ops._logging import JsonFormatter
from sagaloom.client import outcome, start_saga
from sagaloom.server import free_port
from tests._helpers import TASK_QUEUE, Stack, cli, order
from workers.demo import run_scenarios
from workflows.order import ORDER

pytestmark = pytest.mark.integration


def scrape(text: str, name: str, **labels: str) -> float:
    """Sum the samples of metric ``name`` whose labels include ``labels``."""
    total = 0.0
    for line in text.splitlines():
        match = re.match(rf"^{name}(?:_total)?\{{(.*)\}} ([0-9.e+-]+)$", line)
        if not match:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1)))
        if all(found.get(k) == v for k, v in labels.items()):
            total += float(match.group(2))
    return total


@pytest.fixture(scope="module")
def metrics_worker(stack: Stack) -> Iterator[tuple[str, str, str]]:
    queue = f"metrics-{uuid.uuid4().hex[:6]}"
    metrics, health = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    process = stack.start_worker(
        "worker-metrics",
        "--task-queue",
        queue,
        "--metrics-address",
        metrics,
        "--health-address",
        health,
    )
    yield queue, metrics, health
    process.terminate()
    process.wait(20)


async def test_worker_metrics_count_sagas_steps_and_compensations(
    stack: Stack, metrics_worker: tuple[str, str, str]
) -> None:
    queue, metrics, health = metrics_worker
    async with httpx.AsyncClient() as http:
        for _ in range(100):  # readiness: the worker polls its queue
            try:
                if (await http.get(f"http://{health}/readyz")).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.2)
        assert (await http.get(f"http://{health}/healthz")).text == "ok"

        checked = await run_scenarios(stack.client, stack.services, queue, uuid.uuid4().hex[:6])
        assert all(item.ok for item in checked)
        text = (await http.get(f"http://{metrics}/metrics")).text

    assert scrape(text, "sagaloom_saga_started", saga="OrderSaga") == 5
    assert scrape(text, "sagaloom_saga_started", saga="TripSaga") == 2
    assert scrape(text, "sagaloom_saga_started", saga="TransferSaga") == 2
    assert scrape(text, "sagaloom_saga_ended", saga="TransferSaga", status="COMPENSATED") == 1
    assert scrape(text, "sagaloom_saga_ended", saga="OrderSaga", status="COMPLETED") == 2
    assert scrape(text, "sagaloom_saga_ended", saga="OrderSaga", status="COMPENSATED") == 3
    assert scrape(text, "sagaloom_saga_ended", saga="TripSaga", status="COMPLETED") == 1
    assert scrape(text, "sagaloom_saga_ended", saga="TripSaga", status="COMPENSATED") == 1
    # declined + no-route undo the reservation; no-route also refunds the charge.
    assert (
        scrape(text, "sagaloom_compensations", saga="OrderSaga", step="reserve-stock", outcome="ok")
        == 2
    )
    assert (
        scrape(
            text, "sagaloom_compensations", saga="OrderSaga", step="charge-payment", outcome="ok"
        )
        == 1
    )
    assert scrape(text, "sagaloom_compensations", outcome="failed") == 0
    # The flaky payment took 3 attempts; the histogram saw every charge-payment step.
    assert (
        scrape(text, "sagaloom_step_attempts_count", saga="OrderSaga", step="charge-payment") == 4
    )
    assert (
        scrape(text, "sagaloom_step_attempts_sum", saga="OrderSaga", step="charge-payment")
        == 1 + 1 + 3 + 1
    )
    assert scrape(text, "sagaloom_step_duration_count", saga="TripSaga", step="cooling-off") == 2
    # The SDK's own metrics are on the same endpoint.
    assert "temporal_workflow_task_schedule_to_start_latency" in text
    assert "temporal_worker_task_slots_available" in text


def test_cli_list_filters_by_status_and_saga(stack: Stack) -> None:
    run = cli(
        "list", "--status", "compensated", "--saga", "OrderSaga", "--json", address=stack.address
    )
    assert run.returncode == 0, run.stderr
    rows = json.loads(run.stdout)
    assert rows and all(r["status"] == "COMPENSATED" and r["saga"] == "OrderSaga" for r in rows)
    bad = cli("list", "--status", "sideways", address=stack.address)
    assert bad.returncode == 2 and "unknown status 'sideways'" in bad.stderr


async def test_an_expected_step_failure_is_a_line_or_two_not_a_traceback(
    stack: Stack, key: str
) -> None:
    await stack.fault("payment", op="do", match=key, mode="error", status=503, times=1)
    handle = await start_saga(
        stack.client, ORDER, order(key, amount_cents=900_000), task_queue=TASK_QUEUE
    )
    assert (await outcome(handle)).status is SagaStatus.COMPENSATED
    await asyncio.sleep(0.5)  # let the workers flush
    logs = "".join((stack.tmp / f"worker-{i}.log").read_text() for i in (1, 2))
    lines = [line for line in logs.splitlines() if handle.id in line]
    # operating.md, Logs: the 503 (retried) and the 402 (a refusal) are expected: the SDK logs
    # them at DEBUG; the saga's own line says the step failed for good, and why.
    assert len(lines) == 1, lines
    assert "charge-payment failed for good" in lines[0] and "HTTP 402" in lines[0]
    assert "Traceback" not in logs


def test_json_log_lines_carry_the_saga_and_step() -> None:
    formatter = JsonFormatter()
    record = logging.LogRecord(
        "temporalio.activity", logging.WARNING, __file__, 1, "boom", (), None
    )
    record.temporal_activity = {
        "workflow_id": "OrderSaga-1",
        "activity_id": "charge-payment",
        "attempt": 2,
    }
    entry = json.loads(formatter.format(record))
    assert entry["workflow_id"] == "OrderSaga-1" and entry["activity_id"] == "charge-payment"
    assert entry["level"] == "WARNING" and entry["message"] == "boom"
