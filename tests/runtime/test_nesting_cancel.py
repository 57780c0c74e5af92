"""Cancellations crossing a parent saga's conversation with its child, on a real dev server.

Each test forces one order of events with gated participant calls (and, for the race the chaos
run found, by stopping the workflow worker so a cancel and the child's "steps done" signal land in
one workflow task). Every run must end, parent and child agreeing: nothing held open forever,
nothing half-done. The exhaustive model of all orders is ``tests/model/test_nesting_model.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle
from temporalio.worker import Worker

from sagaloom import SagaStatus
from sagaloom.client import Outcome, connect, outcome, start_saga
from sagaloom.server import DevServer
from tests._sagas import NESTING, NestingSaga, Rules2Saga
from tests._scripted import CALLS, GATES, STARTED, scripted

pytestmark = pytest.mark.integration
QUEUE = "nesting-cancel"
SETTLE = 60.0


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def client(dev_server: DevServer) -> AsyncIterator[Client]:
    client = await connect(dev_server.address)
    async with Worker(client, task_queue=QUEUE, activities=[scripted]):
        yield client
    for gate in GATES.values():
        gate.set()


def workflows(client: Client) -> Worker:
    """The workflow worker alone (no cache: a restarted one takes every task at once)."""
    return Worker(
        client,
        task_queue=QUEUE,
        workflows=[NestingSaga, Rules2Saga],
        max_cached_workflows=0,
    )


async def begin(client: Client, **steps: str) -> tuple[str, WorkflowHandle[Any, Any]]:
    run = uuid.uuid4().hex[:8]
    handle = await start_saga(client, NESTING, {"run": run, "steps": steps}, task_queue=QUEUE)
    return run, handle


async def called(run: str, path: str) -> None:
    """Wait until the participant call ``path`` of this run has arrived."""
    for _ in range(400):
        if any(p == path for p, _ in STARTED[run]):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{path} never called in run {run}: {CALLS[run]}")


async def ended(client: Client, handle: WorkflowHandle[Any, Any]) -> tuple[Outcome, Outcome]:
    """Both outcomes, parent's and child's, within the settle time (else: which one hangs)."""
    child = client.get_workflow_handle(f"{handle.id}:trip")
    try:
        return await asyncio.wait_for(asyncio.gather(outcome(handle), outcome(child)), SETTLE)
    except TimeoutError:
        states = [(await h.describe()).status for h in (handle, child)]
        raise AssertionError(f"never settled: parent and child {states}") from None


def paths(run: str) -> list[str]:
    return [p for p, _ in CALLS[run]]


async def test_parent_cancelled_while_the_child_runs_a_step(client: Client) -> None:
    async with workflows(client):
        run, handle = await begin(client, b="gate")
        await called(run, "/b")
        await handle.cancel()
        GATES[f"{run}/b"].set()
        parent, child = await ended(client, handle)
    assert parent.status is SagaStatus.CANCELED
    assert child.status is SagaStatus.CANCELED
    assert paths(run)[-3:] == ["/b/undo", "/a/undo", "/p1/undo"]


async def test_parent_cancelled_while_its_child_is_held(client: Client) -> None:
    async with workflows(client):
        run, handle = await begin(client, p2="gate")
        await called(run, "/p2")  # the child reported done and waits for the parent's word
        await handle.cancel()
        parent, child = await ended(client, handle)
        GATES[f"{run}/p2"].set()
    assert parent.status is SagaStatus.CANCELED
    assert child.status is SagaStatus.COMPENSATED  # compensated as a unit, on its parent's word
    assert {"/b/undo", "/a/undo", "/p1/undo"} <= set(paths(run))


async def test_a_held_child_cancelled_by_an_operator_fails_its_parent(client: Client) -> None:
    """Before: the parent completed while its child had undone the trip."""
    async with workflows(client):
        run, handle = await begin(client, p2="gate")
        await called(run, "/p2")
        await client.get_workflow_handle(f"{handle.id}:trip").cancel()
        child = await asyncio.wait_for(outcome(client.get_workflow_handle(f"{handle.id}:trip")), 30)
        GATES[f"{run}/p2"].set()
        parent, child = await ended(client, handle)
    assert child.status is SagaStatus.CANCELED
    assert parent.status is SagaStatus.COMPENSATED
    assert parent.report is not None and parent.report.failed_step == "trip"
    assert paths(run)[-2:] == ["/p2/undo", "/p1/undo"]


async def test_a_cancel_and_the_childs_steps_done_in_one_workflow_task(client: Client) -> None:
    """The chaos run's hang (../shared/evidence): the parent, cancelled, asks the child to cancel
    while the child's "steps done" signal is in flight; the child's next workflow task holds both
    the cancel and the signal's completion, and the SDK returns the signal's result without
    raising the cancel. The child must still compensate, and the parent end."""
    runs = []
    async with workflows(client):
        for _ in range(4):
            runs.append(await begin(client, b="gate"))
        for run, _ in runs:
            await called(run, "/b")
    # No workflow worker: the children's "b done" and the parents' cancels wait for the next one.
    for run, handle in runs:
        GATES[f"{run}/b"].set()
        await handle.cancel()
    await asyncio.sleep(1)
    async with workflows(client):
        results = await asyncio.gather(*(ended(client, h) for _, h in runs))
    for (run, handle), (parent, child) in zip(runs, results, strict=True):
        assert parent.status is SagaStatus.CANCELED, handle.id
        assert child.status in (SagaStatus.CANCELED, SagaStatus.COMPENSATED), handle.id
        assert {"/b/undo", "/a/undo", "/p1/undo"} <= set(paths(run))
        with contextlib.suppress(Exception):
            describe = await client.get_workflow_handle(f"{handle.id}:trip").describe()
            assert describe.status is not WorkflowExecutionStatus.RUNNING
