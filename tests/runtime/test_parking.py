"""A saga parked on a failed compensation survives worker restarts and is resolved from the CLI."""

from __future__ import annotations

import asyncio
import json
import signal

import pytest

from sagaloom import SagaState, SagaStatus
from sagaloom.client import outcome, start_saga
from tests._helpers import TASK_QUEUE, Stack, cli, order, wait_for_status
from workflows.order import ORDER

pytestmark = pytest.mark.integration


async def test_parked_saga_survives_worker_restarts_and_is_resolved_from_the_cli(
    stack: Stack, key: str
) -> None:
    # The refund is refused once (409: non-retryable), so the compensation fails for good.
    await stack.fault("payment", op="undo", match=key, mode="reject", status=409, times=1)
    handle = await start_saga(stack.client, ORDER, order(key, country="AQ"), task_queue=TASK_QUEUE)
    state = await wait_for_status(handle, SagaStatus.NEEDS_ATTENTION)
    assert state.parked_step == "charge-payment"
    listed = cli("list", "--status", "needs_attention", "--json", address=stack.address)
    assert handle.id in [row["workflow_id"] for row in json.loads(listed.stdout)]

    # Every worker dies and new ones come up: the parked saga is rebuilt from its history.
    for i, worker in enumerate(stack.workers):
        worker.send_signal(signal.SIGKILL)
        worker.wait()
        stack.workers[i] = stack.start_worker(f"worker-after-park-{i}", endpoint=stack.endpoints[i])
    await stack.wait_for_pollers(2)
    assert (await handle.query("saga_state", result_type=SagaState)).parked_step == "charge-payment"
    assert await stack.record("inventory", key) == "active"  # not undone while parked

    wrong = cli("resolve", handle.id, "--skip", "reserve-stock", address=stack.address)
    assert wrong.returncode == 2 and "parked step 'charge-payment'" in wrong.stderr
    fixed = cli(
        "resolve", handle.id, "--retry", "--note", "payment service fixed", address=stack.address
    )
    assert fixed.returncode == 0, fixed.stderr

    result = await asyncio.wait_for(outcome(handle), 60)
    assert result.status is SagaStatus.COMPENSATED
    assert await stack.record("payment", key) == "undone"
    assert await stack.record("inventory", key) == "undone"
    state = await handle.query("saga_state", result_type=SagaState)
    assert [(d.action, d.note) for d in state.decisions] == [("retry", "payment service fixed")]
