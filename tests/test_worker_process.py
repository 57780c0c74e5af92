"""Worker processes: graceful shutdown on SIGTERM, and sagas survive a worker being killed."""

from __future__ import annotations

import asyncio
import signal

import pytest

from tests._helpers import TASK_QUEUE, Stack, order, wait_for_step
from workers import outcome, start_saga
from workflows import SagaState, SagaStatus, StepStatus
from workflows.order import ORDER

pytestmark = pytest.mark.integration


async def test_sigterm_stops_a_worker_gracefully(stack: Stack) -> None:
    worker = stack.start_worker("worker-sigterm")
    await stack.wait_for_pollers(3)
    worker.send_signal(signal.SIGTERM)
    code = await asyncio.to_thread(worker.wait, 20)
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
    stack.workers[stack.workers.index(victim)] = stack.start_worker("worker-replacement")
    result = await asyncio.wait_for(outcome(handle), 90)

    assert result.status is SagaStatus.COMPLETED
    state = await handle.query("saga_state", result_type=SagaState)
    assert state.steps[1].attempts >= 2
    assert len([e for e in await stack.log("payment", key) if e["op"] == "do"]) == 1
    for service in ("inventory", "payment", "shipping"):
        assert await stack.record(service, key) == "active"
