"""A child saga as a step: compensated as a unit when a later step fails, released on success."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from temporalio.client import Client, WorkflowExecutionStatus

from sagaloom import SagaStatus
from sagaloom.client import Outcome, outcome, start_saga
from tests._sagas import NESTING, NestingSaga, Rules2Saga
from tests._scripted import CALLS
from tests.conftest import ScriptedWorker

pytestmark = pytest.mark.integration
QUEUE = "nesting"


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def client(scripted_worker: ScriptedWorker, temporal: Client) -> AsyncIterator[Client]:
    async with scripted_worker(QUEUE, [NestingSaga, Rules2Saga]):
        yield temporal


async def run(client: Client, **steps: str) -> tuple[Any, Outcome, list[str]]:
    run_id = uuid.uuid4().hex[:8]
    handle = await start_saga(client, NESTING, {"run": run_id, "steps": steps}, task_queue=QUEUE)
    result = await outcome(handle)
    return handle, result, [p for p, _ in CALLS[run_id]]


async def test_the_child_saga_completes_with_its_parent(client: Client) -> None:
    handle, result, calls = await run(client)
    assert result.status is SagaStatus.COMPLETED
    assert calls == ["/p1", "/a", "/b", "/p2"]
    assert result.report is not None
    assert result.report.outputs["trip"] == {"a": {"id": "a-1"}, "b": {"id": "b-1"}}
    child = client.get_workflow_handle(f"{handle.id}:trip")
    assert (await child.describe()).status is WorkflowExecutionStatus.COMPLETED


async def test_a_later_failure_compensates_the_completed_child_as_a_unit(client: Client) -> None:
    handle, result, calls = await run(client, p2="reject")
    assert result.status is SagaStatus.COMPENSATED
    # The child undoes its own steps in its own reverse order, then the parent's p1.
    assert calls == ["/p1", "/a", "/b", "/p2", "/b/undo", "/a/undo", "/p1/undo"]
    child = client.get_workflow_handle(f"{handle.id}:trip")
    assert (await child.describe()).status is WorkflowExecutionStatus.FAILED
    assert (await outcome(child)).status is SagaStatus.COMPENSATED
    # The step table lists the child step as compensated (as a unit).
    trip = next(s for s in result.report.steps if s.name == "trip")
    assert trip.has_compensation and trip.status.value == "compensated"


async def test_a_child_that_compensated_itself_fails_the_parents_step(client: Client) -> None:
    _, result, calls = await run(client, b="reject")
    assert result.status is SagaStatus.COMPENSATED
    assert result.report is not None and result.report.failed_step == "trip"
    assert calls == ["/p1", "/a", "/b", "/a/undo", "/p1/undo"]  # the child is not undone twice
    # The parent says why: the child's failed step and its error, not "child workflow failed".
    assert "step b failed" in (result.report.error or "")
    assert "Rejected: refused" in (result.report.error or "")
    assert "Child Workflow execution failed" not in (result.error or "")


async def test_the_signals_between_parent_and_child_read_as_what_they_mean(client: Client) -> None:
    handle, result, _ = await run(client, p2="reject")
    assert result.status is SagaStatus.COMPENSATED
    child = client.get_workflow_handle(f"{handle.id}:trip")
    signals = [
        e.workflow_execution_signaled_event_attributes.signal_name
        for h in (handle, child)
        async for e in h.fetch_history_events()
        if e.HasField("workflow_execution_signaled_event_attributes")
    ]
    assert sorted(signals) == ["child_saga_steps_done", "parent_saga_decision"]
