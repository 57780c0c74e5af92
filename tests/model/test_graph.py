"""Parallel steps, reverse topological compensation, step kinds and their checks."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from temporalio.client import Client, WorkflowUpdateFailedError

from sagaloom import (
    Http,
    Resolution,
    Saga,
    SagaDefinitionError,
    SagaState,
    SagaStatus,
    Step,
    StepStatus,
)
from sagaloom.client import outcome, start_saga
from tests._helpers import wait_for_status
from tests._sagas import (
    CONTINUING,
    DIAMOND,
    PARALLEL_DIAMOND,
    PIVOTED,
    ContinuingSaga,
    DiamondSaga,
    ParallelDiamondSaga,
    PivotedSaga,
)
from tests._scripted import CALLS
from tests.conftest import ScriptedWorker
from workflows.order import OrderInput

QUEUE = "graph"


def step(name: str, **extra: Any) -> Step:
    undo = None if extra.get("kind") == "retriable" else Http("s", "POST", f"/{name}/undo")
    return Step(name, Http("s", "POST", f"/{name}"), compensation=undo, **extra)


@pytest.mark.parametrize(
    ("steps", "message"),
    [
        ([step("a", after=["x"])], "step 'a': depends on unknown step 'x'"),
        ([step("a", after=["a"])], "step 'a': depends on itself"),
        ([step("a", after=["b"]), step("b", after=["a"])], "dependency cycle"),
        ([step("a", kind="pivot"), step("b", kind="pivot")], "step 'b': a saga has at most one"),
        (
            [
                step("a", kind="pivot"),
                Step(
                    "b",
                    Http("s", "POST", "/b"),
                    compensation=Http("s", "POST", "/u"),
                    kind="retriable",
                ),
            ],
            "step 'b': a retriable step has no compensation",
        ),
        (
            [step("a", kind="retriable", after=()), step("b", kind="pivot", after=())],
            "step 'a': a retriable step must run after the pivot",
        ),
        ([step("a", kind="retriable")], "the saga has no pivot"),
        ([step("a", kind="pivot"), step("b")], "step 'b': runs after the pivot 'a'"),
    ],
)
def test_invalid_shapes_are_rejected_when_defined_naming_the_step(
    steps: list[Step], message: str
) -> None:
    with pytest.raises(SagaDefinitionError, match=message.replace("(", r"\(")):
        Saga("Bad", OrderInput, steps)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def client(scripted_worker: ScriptedWorker, temporal: Client) -> AsyncIterator[Client]:
    sagas = [DiamondSaga, ParallelDiamondSaga, ContinuingSaga, PivotedSaga]
    async with scripted_worker(QUEUE, sagas):
        yield temporal


async def run(client: Client, saga: Saga[Any], **steps: str) -> tuple[Any, list[str], str]:
    run_id = uuid.uuid4().hex[:8]
    plan = {"run": run_id, "steps": {k.replace("_", "-"): v for k, v in steps.items()}}
    handle = await start_saga(client, saga, plan, task_queue=QUEUE)
    return handle, [p for p, _ in CALLS[run_id]], run_id


def before(calls: list[str], first: str, then: str) -> bool:
    return calls.index(first) < calls.index(then)


@pytest.mark.integration
@pytest.mark.parametrize("saga", [DIAMOND, PARALLEL_DIAMOND], ids=["one-by-one", "parallel"])
async def test_diamond_runs_branches_in_parallel_and_compensates_in_reverse_topological_order(
    client: Client, saga: Saga[Any]
) -> None:
    handle, _, run_id = await run(client, saga, b="slow", c="slow", d="reject")
    result = await outcome(handle)
    calls = [p for p, _ in CALLS[run_id]]
    assert result.status is SagaStatus.COMPENSATED
    assert result.report is not None and result.report.failed_step == "d"
    assert calls[0] == "/a" and set(calls[1:3]) == {"/b", "/c"} and calls[3] == "/d"
    # b and c (2 s each) ran side by side: c started while b was still running.
    state = await handle.query("saga_state", result_type=SagaState)
    b, c = state.steps[1], state.steps[2]
    assert b.started_at and b.ended_at and c.started_at
    assert (b.ended_at - b.started_at).total_seconds() >= 1.5
    assert abs((c.started_at - b.started_at).total_seconds()) < 0.5
    # Compensation from the participant's log: d refused (not undone); b and c undone before a.
    undo = [p for p in calls if p.endswith("/undo")]
    assert sorted(undo[:2]) == ["/b/undo", "/c/undo"] and undo[2:] == ["/a/undo"]
    assert [c.step for c in result.report.compensations][-1] == "a"


@pytest.mark.integration
async def test_a_failing_branch_cancels_the_running_one_which_is_then_undone(
    client: Client,
) -> None:
    handle, _, run_id = await run(client, DIAMOND, b="hang", c="reject")
    # b hangs until cancelled; its 30 s attempt limit must not be what ends it.
    result = await asyncio.wait_for(outcome(handle), 20)
    calls = [p for p, _ in CALLS[run_id]]
    assert result.status is SagaStatus.COMPENSATED
    assert result.report is not None and result.report.failed_step == "c"
    assert "/d" not in calls  # never started
    assert "/c/undo" not in calls  # refused: nothing to undo
    assert before(calls, "/b/undo", "/a/undo")  # b was cancelled mid-call: its outcome unknown
    state = await handle.query("saga_state", result_type=SagaState)
    assert [s.status for s in state.steps] == [
        StepStatus.COMPENSATED,
        StepStatus.COMPENSATED,
        StepStatus.FAILED,
        StepStatus.PENDING,
    ]
    assert state.steps[1].error == "cancelled"


@pytest.mark.integration
async def test_continue_on_compensation_error_undoes_the_rest_and_reports_every_failure(
    client: Client,
) -> None:
    handle, _, run_id = await run(client, CONTINUING, c="reject", undo_b="reject")
    result = await outcome(handle)
    assert result.status is SagaStatus.FAILED
    assert result.report is not None
    assert [(c.step, c.ok) for c in result.report.compensations] == [("b", False), ("a", True)]
    assert [p for p, _ in CALLS[run_id]] == ["/a", "/b", "/c", "/b/undo", "/a/undo"]
    assert "1 compensation(s) failed: b:" in (result.error or "")


@pytest.mark.integration
async def test_a_failing_pivot_compensates_the_steps_before_it(client: Client) -> None:
    handle, _, run_id = await run(client, PIVOTED, b="reject")
    result = await outcome(handle)
    assert result.status is SagaStatus.COMPENSATED
    assert [p for p, _ in CALLS[run_id]] == ["/a", "/b", "/a/undo"]


@pytest.mark.integration
async def test_a_retriable_step_out_of_budget_parks_and_is_never_compensated(
    client: Client,
) -> None:
    handle, _, run_id = await run(client, PIVOTED, c="unavailable")
    state = await wait_for_status(handle, SagaStatus.NEEDS_ATTENTION)
    assert state.parked_step == "c"
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await handle.execute_update("resolve", Resolution(action="mark_compensated", step="c"))
    assert "retry or skip it" in str(refused.value.cause)
    await handle.execute_update("resolve", Resolution(action="skip", step="c", note="shipped"))
    result = await outcome(handle)
    assert result.status is SagaStatus.COMPLETED
    calls = [p for p, _ in CALLS[run_id]]
    assert calls == ["/a", "/b", "/c", "/c"]  # retried within its budget, then parked
    assert not [p for p in calls if p.endswith("/undo")]
