"""Worker processes: graceful shutdown on SIGTERM, and sagas survive a worker being killed."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time

import httpx
import pytest

from sagaloom import SagaState, SagaStatus, StepStatus
from sagaloom.client import outcome, start_saga
from sagaloom.server import free_port
from tests._helpers import TASK_QUEUE, Stack, order, wait_for_step
from workflows.order import ORDER

pytestmark = pytest.mark.integration


async def test_sigterm_stops_a_worker_gracefully(stack: Stack) -> None:
    worker = stack.start_worker("worker-sigterm")
    log_path = stack.tmp / "worker-sigterm.log"
    try:
        async with asyncio.timeout(60):  # running: it says so once it polls (not a count of
            while "worker polling" not in log_path.read_text():  # all pollers: others change it)
                assert worker.poll() is None, log_path.read_text()
                await asyncio.sleep(0.2)
        worker.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(worker.wait, 20)
    finally:
        if worker.poll() is None:  # the test failed: it leaves no worker behind
            worker.kill()
            worker.wait()
    assert code == 0
    log = (stack.tmp / "worker-sigterm.log").read_text()
    assert "worker stopped" in log
    assert "Traceback" not in log


async def test_saga_finishes_when_the_worker_running_its_step_is_killed(
    stack: Stack, key: str
) -> None:
    # SIGKILL the very worker process that holds the in-flight payment call. The heartbeat
    # timeout hands the step to a surviving worker, and the charge applies exactly once.
    await stack.fault("payment", op="do", match=key, mode="slow", delay=3.0, times=1)
    handle = await start_saga(stack.client, ORDER, order(key), task_queue=TASK_QUEUE)
    await wait_for_step(handle, "charge-payment", StepStatus.RUNNING)
    identity = ""
    while not identity:
        pending = (await handle.describe()).raw_description.pending_activities
        identity = pending[0].last_worker_identity if pending else ""
        await asyncio.sleep(0.1)
    pid = int(identity.split("@", 1)[0])
    victim = next(w for w in stack.workers if w.pid == pid)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    index = stack.workers.index(victim)
    stack.workers[index] = stack.start_worker("worker-replacement", endpoint=stack.endpoints[index])
    result = await asyncio.wait_for(outcome(handle), 90)

    assert result.status is SagaStatus.COMPLETED
    state = await handle.query("saga_state", result_type=SagaState)
    assert state.steps[1].attempts >= 2
    assert len([e for e in await stack.log("payment", key) if e["op"] == "do"]) == 1
    for service in ("inventory", "payment", "shipping"):
        assert await stack.record(service, key) == "active"


async def _ready(address: str, within: float = 60) -> None:
    deadline = time.monotonic() + within
    async with httpx.AsyncClient() as http:
        while True:
            try:
                if (await http.get(f"http://{address}/readyz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"{address} never became ready")
            await asyncio.sleep(0.2)


def _children(pid: int) -> set[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return {int(p) for p in out.split()}


async def test_processes_are_supervised_restarted_and_stopped_together(stack: Stack) -> None:
    port = free_port()
    queue = f"supervised-{port}"
    supervisor = stack.start_worker(
        "worker-supervisor",
        "--processes",
        "2",
        "--task-queue",
        queue,
        "--health-address",
        f"127.0.0.1:{port}",
    )
    try:
        await _ready(f"127.0.0.1:{port}")
        await _ready(f"127.0.0.1:{port + 1}")
        first = _children(supervisor.pid)
        assert len(first) == 2
        victim = min(first)
        os.kill(victim, signal.SIGKILL)
        await asyncio.sleep(1.5)  # the supervisor notices and restarts it after 1 s
        await _ready(f"127.0.0.1:{port}")
        await _ready(f"127.0.0.1:{port + 1}")
        second = _children(supervisor.pid)
        assert len(second) == 2 and victim not in second

        supervisor.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(supervisor.wait, 30) == 0
        for pid in second:
            with pytest.raises(ProcessLookupError):
                os.kill(pid, 0)
    finally:
        if supervisor.poll() is None:
            supervisor.kill()
    log = (stack.tmp / "worker-supervisor.log").read_text()
    assert "exited with -9; restarting" in log
