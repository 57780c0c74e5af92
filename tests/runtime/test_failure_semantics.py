"""Failure semantics at the edges: a 2xx that cannot be read, an undo that never succeeds,
a worker without a service's URL, a worker started before its server."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
import pytest_asyncio

from sagaloom import SagaStatus
from sagaloom.client import outcome, start_saga
from sagaloom.server import DevServer, DevServerOptions, free_port
from sagaloom.worker import WorkerConfig, build_worker
from tests._helpers import EXAMPLES, ROOT, TASK_QUEUE, Stack, cli, order, wait_for_status
from tests._sagas import BUDGET_ORDER, BudgetOrderSaga
from workflows.order import ORDER

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("mode", ["garble", "empty"])
async def test_a_2xx_that_cannot_be_read_took_effect_and_is_compensated(
    stack: Stack, key: str, mode: str
) -> None:
    # The payment service charges, then answers 200 with HTML (or nothing where the saga
    # declares a Charge output): the charge stands, so it must be refunded.
    await stack.fault("payment", op="do", match=key, mode=mode, times=1)
    handle = await start_saga(stack.client, ORDER, order(key), task_queue=TASK_QUEUE)
    result = await outcome(handle)
    assert result.status is SagaStatus.COMPENSATED
    assert result.report is not None and result.report.failed_step == "charge-payment"
    assert ("MalformedResponse" if mode == "garble" else "MalformedOutput") in (
        result.report.error or ""
    )
    assert [c.step for c in result.report.compensations] == ["charge-payment", "reserve-stock"]
    assert await stack.record("payment", key) == "undone"  # applied, then refunded
    assert await stack.record("inventory", key) == "undone"


async def test_a_redirect_after_the_effect_is_an_unknown_outcome_and_is_undone(
    stack: Stack, key: str
) -> None:
    """Before: a 303 counted as a refusal; the saga ended COMPENSATED with the charge active."""
    await stack.fault("payment", op="do", match=key, mode="redirect", times=1)
    handle = await start_saga(stack.client, ORDER, order(key), task_queue=TASK_QUEUE)
    result = await outcome(handle)
    assert result.status is SagaStatus.COMPENSATED
    assert result.report is not None and result.report.failed_step == "charge-payment"
    assert "UnexpectedStatus" in (result.report.error or "")
    assert "HTTP 303" in (result.report.error or "")
    assert [c.step for c in result.report.compensations] == ["charge-payment", "reserve-stock"]
    assert await stack.record("payment", key) == "undone"  # applied, then refunded


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def budget_queue(stack: Stack) -> AsyncIterator[str]:
    queue = f"budget-{uuid.uuid4().hex[:6]}"
    config = WorkerConfig(task_queue=queue, services=stack.services)
    async with build_worker(stack.client, [BudgetOrderSaga], config=config):
        yield queue


async def test_an_undo_that_keeps_failing_parks_for_an_operator_and_resumes(
    stack: Stack, budget_queue: str, key: str
) -> None:
    await stack.fault("payment", op="undo", match=key, mode="error", status=500)  # for good
    data = order(key, country="AQ")  # shipping refuses: the charge must be refunded
    handle = await start_saga(stack.client, BUDGET_ORDER, data, task_queue=budget_queue)
    state = await wait_for_status(handle, SagaStatus.NEEDS_ATTENTION, within=20)
    assert state.parked_step == "charge-payment"
    charge = state.steps[1]
    assert "timed out" in (charge.compensation_error or "")
    assert "HTTP 500" in (charge.compensation_error or "")  # the last error, for the operator
    # (The CLI runs in a thread: this test's event loop also runs the saga's worker.)
    listed = await asyncio.to_thread(
        cli,
        "list",
        "--status",
        "needs_attention",
        "--saga",
        "BudgetOrderSaga",
        address=stack.address,
    )
    assert handle.id in listed.stdout

    async with httpx.AsyncClient() as http:  # the payment service is mended
        await http.delete(f"{stack.services['payment']}/_admin/faults")
    resumed = await asyncio.to_thread(
        cli, "resolve", handle.id, "--retry", "--note", "PSP fixed", address=stack.address
    )
    assert resumed.returncode == 0, resumed.stderr
    result = await asyncio.wait_for(outcome(handle), 60)
    assert result.status is SagaStatus.COMPENSATED
    assert await stack.record("payment", key) == "undone"
    assert await stack.record("inventory", key) == "undone"


def test_a_worker_refuses_to_start_without_a_url_for_a_service_its_sagas_use(
    stack: Stack,
) -> None:
    env = stack.worker_env()
    del env["SAGALOOM_SERVICE_SHIPPING"]
    run = subprocess.run(
        [sys.executable, "-m", "sagaloom", "worker"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 2
    assert "OrderSaga" in run.stderr and "create-shipment" in run.stderr
    assert "SAGALOOM_SERVICE_SHIPPING" in run.stderr and "Traceback" not in run.stderr


def _spawn(env: dict[str, str], log: Path, *args: str) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "sagaloom", "worker", *args],
            env=env,
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


async def test_a_worker_started_before_its_server_waits_for_it(
    stack: Stack, tmp_path: Path
) -> None:
    port, health = free_port(), f"127.0.0.1:{free_port()}"
    env = {
        **stack.worker_env(),
        "TEMPORAL_ADDRESS": f"127.0.0.1:{port}",
        "SAGALOOM_TASK_QUEUE": "waiting",
        "SAGALOOM_SAGA_MODULES": ",".join(EXAMPLES),
    }
    log = tmp_path / "worker.log"
    worker = _spawn(env, log, "--health-address", health)
    server = DevServer(replace(DevServerOptions.in_folder(tmp_path, ui=False), port=port))
    try:
        async with httpx.AsyncClient() as http:
            for _ in range(100):
                try:
                    if (await http.get(f"http://{health}/healthz")).status_code == 200:
                        break
                except httpx.TransportError:
                    await asyncio.sleep(0.1)
            assert (await http.get(f"http://{health}/readyz")).status_code == 503
            await asyncio.sleep(2.5)
            assert worker.poll() is None  # still alive, retrying
            await server.start()
            deadline = time.monotonic() + 60
            while (await http.get(f"http://{health}/readyz")).status_code != 200:
                assert time.monotonic() < deadline, log.read_text()
                await asyncio.sleep(0.3)
        text = log.read_text()
        assert "not reachable (attempt 1)" in text and "not reachable (attempt 2)" in text
        assert "Traceback" not in text and "Fatal" not in text
    finally:
        worker.terminate()
        worker.wait(30)
        server.stop()
