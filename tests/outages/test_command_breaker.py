"""Outages of an event-driven participant: a ``Command`` step waits while nobody takes its commands.

A real NATS JetStream server, a real worker process with the breakers on, and the demo warehouse
(``services/_warehouse.py``), stopped and started again by the test as an outage would.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import nats
import pytest
import pytest_asyncio
from temporalio.client import WorkflowHandle
from temporalio.worker import Replayer

from sagaloom import SagaState, SagaStatus, StepStatus
from sagaloom.client import outcome, start_saga
from sagaloom.server import NatsServer
from sagaloom.worker import SagaloomPlugin
from services import Warehouse
from tests._broker_sagas import HELD_PACK, HeldPackSaga
from tests._helpers import Stack, cli, wait_for_reply_consumer

pytestmark = pytest.mark.integration
PROBE_SECONDS = 1


@pytest.fixture(scope="module")
def queue() -> str:
    return f"cmd-breaker-{os.urandom(3).hex()}"


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def worker(
    stack: Stack, nats_server: NatsServer, queue: str
) -> AsyncIterator[subprocess.Popen[bytes]]:
    process = stack.start_worker(
        f"cmd-breaker-{queue}",
        *("--module", "tests._broker_sagas", "--task-queue", queue, "--nats", nats_server.url),
        env={
            "SAGALOOM_BREAKER": "on",
            "SAGALOOM_BREAKER_PROBE_SECONDS": str(PROBE_SECONDS),
            "SAGALOOM_BREAKER_RELEASE_PER_SECOND": "2",
        },
    )
    await wait_for_reply_consumer(nats_server.url, process)
    yield process
    process.terminate()
    process.wait(20)


async def states(handles: list[WorkflowHandle[Any, Any]]) -> list[SagaState]:
    return [await h.query("saga_state", result_type=SagaState) for h in handles]


async def all_waiting(handles: list[WorkflowHandle[Any, Any]], within: float = 30) -> None:
    deadline = time.monotonic() + within
    while True:
        now = await states(handles)
        if all(s.status is SagaStatus.WAITING for s in now):
            for state in now:
                assert state.steps[0].status is StepStatus.WAITING
                assert state.steps[0].waiting_for == "warehouse"
            return
        assert time.monotonic() < deadline, f"not all waiting: {[s.status for s in now]}"
        await asyncio.sleep(0.3)


async def pack_commands(url: str) -> int:
    """How many pack commands the commands stream holds."""
    nc = await nats.connect(url)
    try:
        info = await nc.jetstream().stream_info(
            "SAGALOOM_COMMANDS", subjects_filter="sagaloom.cmd.warehouse.pack"
        )
        return sum((info.state.subjects or {}).values())
    finally:
        await nc.close()


async def test_a_command_step_waits_while_its_participant_is_down_then_completes(
    stack: Stack,
    worker: subprocess.Popen[bytes],
    nats_server: NatsServer,
    queue: str,
    tmp_path: Path,
) -> None:
    temporal, run = stack.client, uuid.uuid4().hex[:6]

    async def start(name: str) -> WorkflowHandle[Any, Any]:
        order = {"order_id": f"{run}-{name}", "sku": "book", "quantity": 1}
        return await start_saga(temporal, HELD_PACK, order, task_queue=queue)

    store = tmp_path / "warehouse.sqlite3"
    warehouse = Warehouse(nats_server.url, store).start()
    try:  # the warehouse's consumer exists and has worked
        assert (await outcome(await start("warm"))).status is SagaStatus.COMPLETED
    finally:
        warehouse.close()
    await asyncio.sleep(3)  # down: its last acknowledgement is older than the 2 s reply timeout

    handles = [await start(str(i)) for i in range(4)]
    await all_waiting(handles)  # each reply was late and nobody takes the commands: they wait
    listed = await asyncio.to_thread(cli, "services", "--json", address=stack.address)
    assert listed.returncode == 0, listed.stderr
    view = json.loads(listed.stdout)
    breaker = next(v for v in view if v["service"] == "warehouse")
    assert breaker["status"] == "open" and len(breaker["waiting"]) == 4
    assert "no participant pulls sagaloom.cmd.warehouse" in breaker["last_error"]

    late = await start("late")  # reaches the step while the breaker is open: waits unsent
    await all_waiting([late])
    await asyncio.sleep(5)  # well past the reply timeout: nobody compensates, nothing resent
    assert [s.status for s in await states([*handles, late])] == [SagaStatus.WAITING] * 5
    assert await pack_commands(nats_server.url) == 1 + 4  # the warm-up's and the four sent

    back = Warehouse(nats_server.url, store).start()
    try:
        results = [await asyncio.wait_for(outcome(h), 60) for h in [*handles, late]]
        assert [r.status for r in results] == [SagaStatus.COMPLETED] * 5
        log = back.store.dump()["log"]
    finally:
        back.close()
    for name in [*map(str, range(4)), "late"]:
        ops = [e["op"] for e in log if e["key"] == f"{run}-{name}"]
        assert ops == ["do"], (name, ops)  # packed once, never unpacked
    assert await pack_commands(nats_server.url) == 1 + 5  # none sent twice
    # the new code path replays: a saga that waited, and the service's breaker
    breaker = temporal.get_workflow_handle(f"sagaloom-breaker:{queue}:warehouse")
    replayer = Replayer(workflows=[HeldPackSaga], plugins=[SagaloomPlugin(services={})])
    for history in (await handles[0].fetch_history(), await breaker.fetch_history()):
        await replayer.replay_workflow(history)


async def test_a_command_breaker_counts_only_the_consumers_that_take_its_services_subjects(
    nats_server: NatsServer,
) -> None:
    """operating.md: a ``Command`` step's breaker counts only the consumers that take that
    service's subjects — a busy participant of another service does not make it look up."""
    plugin = SagaloomPlugin(services={}, nats_url=nats_server.url)
    broker = plugin.broker
    assert broker is not None
    probe = broker.probe_consumers
    js = await broker.jetstream()  # (the streams exist now)
    nc = await nats.connect(nats_server.url)
    pulls: list[asyncio.Task[Any]] = []

    async def pulling(subject: str, durable: str) -> None:
        """A participant of ``subject`` asking for commands right now (a pull request waits)."""
        sub = await nc.jetstream().pull_subscribe(subject, durable=durable)
        pulls.append(asyncio.ensure_future(sub.fetch(1, timeout=30)))
        async with asyncio.timeout(10):
            while True:
                if (await js.consumer_info("SAGALOOM_COMMANDS", durable)).num_waiting >= 1:
                    return
                await asyncio.sleep(0.05)

    try:
        run = uuid.uuid4().hex[:6]
        silent = f"silent{run}"  # a service nobody takes
        assert "no consumer takes" in await probe(silent)
        await pulling("sagaloom.cmd.billing.>", f"billing-{run}")  # another service, busy
        await pulling(f"sagaloom.cmd.{silent}x.>", f"prefix-{run}")  # a longer name, busy
        await pulling("sagaloom.cmd.billing.*", f"billing-any-{run}")  # a wildcard of another
        problem = await probe(silent)
        assert problem, "a consumer of other subjects counted as this service's participant"
        # one of its own, idle: a consumer exists, but nobody pulls
        await nc.jetstream().pull_subscribe(f"sagaloom.cmd.{silent}.>", durable=f"own-{run}")
        assert "no participant pulls" in await probe(silent)
        await pulling(f"sagaloom.cmd.{silent}.pack", f"pack-{run}")  # its own, pulling: up
        assert await probe(silent) == ""
        assert await probe(f"other{run}") != ""  # and it still takes nobody else's
    finally:
        for pull in pulls:
            pull.cancel()
        await nc.close()
        await broker.aclose()
