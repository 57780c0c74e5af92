"""The runtime's rules, with scripted participants in an in-process worker on the dev server."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.exceptions import ActivityError, ApplicationError, RetryState
from temporalio.service import RPCError
from temporalio.worker import UnsandboxedWorkflowRunner

from sagaloom import SAGA_STATUS, Resolution, Saga, SagaState, SagaStatus, StepStatus
from sagaloom._runtime._failures import describe
from sagaloom.client import Outcome, outcome, start_saga
from tests._helpers import wait_for_status
from tests._sagas import LOCAL_RULES, RULES, LocalRulesSaga, RulesSaga
from tests._scripted import CALLS
from tests.conftest import ScriptedWorker

pytestmark = pytest.mark.integration
QUEUE = "runtime-rules"
Target = tuple[Client, Saga[Any], str]
"""A client, the saga to start, and the task queue its worker polls."""


UNSANDBOXED = "runtime-rules-unsandboxed"


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def worker(scripted_worker: ScriptedWorker, temporal: Client) -> AsyncIterator[Client]:
    async with (
        scripted_worker(QUEUE, [RulesSaga, LocalRulesSaga]),
        scripted_worker(UNSANDBOXED, [LocalRulesSaga], workflow_runner=UnsandboxedWorkflowRunner()),
    ):
        yield temporal


@pytest.fixture(
    params=[(RULES, QUEUE), (LOCAL_RULES, QUEUE), (LOCAL_RULES, UNSANDBOXED)],
    ids=["activities", "local-activities", "local-unsandboxed"],
)
def rules_client(worker: Client, request: pytest.FixtureRequest) -> Target:
    """Every rule holds on the regular path, the fast path (local activities) and the fast
    path run unsandboxed (``SAGALOOM_SANDBOX=off``) alike."""
    saga, queue = request.param
    return worker, saga, queue


def saga_of(target: Target) -> Saga[Any]:
    return target[1]


async def run(target: Target, **steps: str) -> tuple[Outcome, list[str]]:
    client, saga, queue = target
    run_id = uuid.uuid4().hex[:8]
    plan = {"run": run_id, "steps": {k.replace("_", "-"): v for k, v in steps.items()}}
    result = await outcome(await start_saga(client, saga, plan, task_queue=queue))
    return result, [path for path, _ in CALLS[run_id]]


async def test_all_steps_run_in_order_and_nothing_is_undone(
    rules_client: Target,
) -> None:
    result, calls = await run(rules_client)
    assert result.status is SagaStatus.COMPLETED
    assert calls == ["/a", "/b", "/c", "/d"]


async def test_rejected_step_is_not_undone_and_earlier_steps_are_in_reverse(
    rules_client: Target,
) -> None:
    result, calls = await run(rules_client, c="reject")
    assert result.status is SagaStatus.COMPENSATED
    assert calls == ["/a", "/b", "/c", "/b/undo", "/a/undo"]
    assert result.report and result.report.failed_step == "c"


async def test_step_that_ran_out_of_retries_may_have_taken_effect_so_it_is_undone(
    rules_client: Target,
) -> None:
    result, calls = await run(rules_client, c="unavailable")
    assert result.status is SagaStatus.COMPENSATED
    assert calls == ["/a", "/b", "/c", "/c", "/c/undo", "/b/undo", "/a/undo"]


async def test_malformed_output_fails_the_step_and_undoes_it(
    rules_client: Target,
) -> None:
    result, calls = await run(rules_client, b="malformed")
    assert result.status is SagaStatus.COMPENSATED
    assert calls == ["/a", "/b", "/b/undo", "/a/undo"]
    assert result.report and "MalformedOutput: Out.id" in (result.report.error or "")


async def test_builders_see_earlier_outputs_and_undo_sees_step_input_and_output(
    rules_client: Target,
) -> None:
    result, _ = await run(rules_client, d="reject")
    assert result.report is not None and result.report.key is not None
    bodies = {path: body for path, body in CALLS[result.report.key]}
    assert bodies["/c"]["seen"] == ["a", "b"]
    assert bodies["/c"]["prev"] == {"id": "b-1"}
    assert bodies["/b/undo"]["step_output"] == {"id": "b-1"}
    assert bodies["/b/undo"]["step_input"]["do"] == "ok"
    assert bodies["/b/undo"]["step_input"]["seen"] == ["a"]


async def start(target: Target, **steps: str) -> tuple[Any, str]:
    client, saga, queue = target
    run_id = uuid.uuid4().hex[:8]
    plan = {"run": run_id, "steps": {k.replace("_", "-"): v for k, v in steps.items()}}
    return await start_saga(client, saga, plan, task_queue=queue), run_id


async def test_failed_compensation_parks_until_an_operator_retries_it(
    rules_client: Target,
) -> None:
    handle, run_id = await start(rules_client, c="reject", undo_b="reject-once")
    state = await wait_for_status(handle, SagaStatus.NEEDS_ATTENTION)
    assert state.parked_step == "b" and "refused once" in (state.steps[1].compensation_error or "")
    assert CALLS[run_id][-1][0] == "/b/undo"  # waiting: a is not undone yet
    description = await handle.describe()
    assert description.typed_search_attributes.get(SAGA_STATUS) == "NEEDS_ATTENTION"

    await handle.execute_update("resolve", Resolution(action="retry", note="refund API back"))
    result = await outcome(handle)
    assert result.status is SagaStatus.COMPENSATED
    assert [p for p, _ in CALLS[run_id]] == ["/a", "/b", "/c", "/b/undo", "/b/undo", "/a/undo"]
    final = await handle.query("saga_state", result_type=SagaState)
    assert [(d.action, d.step, d.note) for d in final.decisions] == [
        ("retry", "b", "refund API back")
    ]


@pytest.mark.parametrize(
    ("action", "ok", "status"),
    [
        ("skip", False, StepStatus.COMPENSATION_SKIPPED),
        ("mark_compensated", True, StepStatus.COMPENSATED),
    ],
)
async def test_operator_skips_or_marks_a_parked_compensation_and_the_rest_continues(
    rules_client: Target, action: str, ok: bool, status: StepStatus
) -> None:
    handle, run_id = await start(rules_client, c="reject", undo_b="reject")
    await wait_for_status(handle, SagaStatus.NEEDS_ATTENTION)
    await handle.execute_update(
        "resolve",
        Resolution(action=action, step="b", note="refunded by hand, ticket 42"),
    )
    result = await outcome(handle)
    assert result.status is SagaStatus.COMPENSATED
    assert [p for p, _ in CALLS[run_id]] == ["/a", "/b", "/c", "/b/undo", "/a/undo"]
    assert result.report is not None
    b, a = result.report.compensations
    assert (b.step, b.ok, b.resolution) == ("b", ok, f"{action}: refunded by hand, ticket 42")
    assert (a.step, a.ok, a.resolution) == ("a", True, None)
    state = await handle.query("saga_state", result_type=SagaState)
    assert state.steps[1].status is status


async def test_a_decision_for_the_wrong_step_or_an_unparked_saga_is_refused(
    rules_client: Target,
) -> None:
    handle, _ = await start(rules_client, c="reject", undo_b="reject")
    await wait_for_status(handle, SagaStatus.NEEDS_ATTENTION)
    with pytest.raises(WorkflowUpdateFailedError) as caught:
        await handle.execute_update("resolve", Resolution(action="skip", step="a"))
    assert "parked step 'b'" in str(caught.value.cause)
    await handle.execute_update("resolve", Resolution(action="skip", step="b"))
    await outcome(handle)
    with pytest.raises(RPCError, match="already completed"):  # nothing left to decide
        await handle.execute_update("resolve", Resolution(action="retry"))


async def test_a_cancel_during_an_action_that_finishes_anyway_stops_and_undoes_it(
    rules_client: Target,
) -> None:
    """The action could not hear the cancel and took effect: it is undone, nothing after runs."""
    handle, run_id = await start(rules_client, a="deaf")
    for _ in range(100):
        if any(path == "/a" for path, _ in CALLS[run_id]):
            break
        await asyncio.sleep(0.05)
    await handle.cancel()
    result = await outcome(handle)
    assert result.status is SagaStatus.CANCELED
    calls = [path for path, _ in CALLS[run_id]]
    forwards = [p for p in calls if not p.endswith("/undo")]
    undos = [p.removesuffix("/undo") for p in calls if p.endswith("/undo")]
    assert forwards[0] == "/a"
    # Every call that ran is undone, in reverse order, after it ran. On the regular path
    # nothing after a runs; on the fast path the steps that ran in the workflow task the cancel
    # made the server refuse (local activities leave no record then) are undone too.
    assert set(forwards) <= set(undos)
    assert undos == sorted(undos, reverse=True)
    if saga_of(rules_client) is RULES:
        assert calls == ["/a", "/a/undo"]


def _activity_error(cause: BaseException, retry_state: RetryState) -> ActivityError:
    err = ActivityError("activity error", scheduled_event_id=5, started_event_id=6, identity="w",
                        activity_type="sagaloom.http", activity_id="charge:compensate",
                        retry_state=retry_state)  # fmt: skip
    err.__cause__ = cause
    return err


def test_an_action_whose_budget_ended_its_retries_says_so_with_the_last_error() -> None:
    """The server stops retrying when the next attempt would end past the budget: the failure
    is then the last attempt's, not a timeout, but the budget is what ended it (an operator
    reads "timed out" either way)."""
    last = ApplicationError(
        "payment POST /charges/refund -> HTTP 500", type="ParticipantUnavailable"
    )
    spent = describe(_activity_error(last, RetryState.TIMEOUT))
    assert spent.startswith("timed out") and spent.endswith(
        "last error: ParticipantUnavailable: payment POST /charges/refund -> HTTP 500"
    )
    refused = describe(_activity_error(last, RetryState.NON_RETRYABLE_FAILURE))
    assert refused == "ParticipantUnavailable: payment POST /charges/refund -> HTTP 500"
