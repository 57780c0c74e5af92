"""Incidents: a step that fails for good holds the saga for an operator instead of compensating
(docs/operating.md, "Incidents"), and the operator redrives it, compensates it, or marks the
step done — each an update with a validator, audited, safe to repeat.

Real dev server, an in-process worker, the scripted participant: a step planned
``down-until-fixed`` answers 500 until the test "deploys the fix"; ``refuse-until-fixed`` answers
a wrong 400 until then. Expectations come from the docs' rules, read off the participant's calls.
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from temporalio.client import Client, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.worker import Replayer

from sagaloom import SagaState, SagaStatus, StepStatus
from sagaloom.client import compensate_held, mark_done, outcome, redrive, start_saga
from sagaloom.converter import DATA_CONVERTER
from tests._helpers import ROOT
from tests._hold_sagas import HOLD, HOLD_ALL, HOLD_DEADLINE, HOLD_SAGAS
from tests._scripted import CALLS, FIXED, KEYS
from tests.conftest import ScriptedWorker

pytestmark = pytest.mark.integration
QUEUE = "hold"
HISTORIES = ROOT / "tests" / "histories"


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def client(scripted_worker: ScriptedWorker, temporal: Client) -> AsyncIterator[Client]:
    async with scripted_worker(QUEUE, HOLD_SAGAS):
        yield temporal


def plan(**steps: str) -> dict[str, Any]:
    return {"run": uuid.uuid4().hex[:10], "steps": steps}


def calls(p: dict[str, Any]) -> list[str]:
    return [path for path, _ in CALLS[p["run"]]]


def keys(p: dict[str, Any], path: str) -> set[str]:
    return {key for at, key in KEYS[p["run"]] if at == path}


def fix(p: dict[str, Any], path: str) -> None:
    FIXED.add(f"{p['run']}{path}")


async def held(handle: WorkflowHandle[Any, Any], within: float = 30) -> SagaState:
    """The saga's state once it holds (fails the test if it ends or does not hold in time)."""
    async with asyncio.timeout(within):
        while True:
            state = await handle.query("saga_state", result_type=SagaState)
            if state.status is SagaStatus.HELD:
                return state
            assert state.status not in (SagaStatus.COMPENSATED, SagaStatus.COMPLETED), state
            await asyncio.sleep(0.1)


async def keep(handle: WorkflowHandle[Any, Any], name: str) -> None:
    """Replay the run on today's code; with ``SAGALOOM_RECORD_HISTORIES`` set, record it for
    tests/release/test_replay.py (``tests/histories/hold-<name>.json``)."""
    history = await handle.fetch_history()
    await Replayer(workflows=HOLD_SAGAS, data_converter=DATA_CONVERTER).replay_workflow(history)
    if not os.environ.get("SAGALOOM_RECORD_HISTORIES"):
        return
    (HISTORIES / f"hold-{name}.json").write_text(history.to_json())
    ids_file = HISTORIES / "hold-ids.json"
    ids = json.loads(ids_file.read_text()) if ids_file.exists() else {}
    ids[f"hold-{name}"] = handle.id
    ids_file.write_text(json.dumps(dict(sorted(ids.items())), indent=2) + "\n")


async def start(client: Client, saga: Any, p: dict[str, Any]) -> WorkflowHandle[Any, Any]:
    return await start_saga(client, saga, p, task_queue=QUEUE)


async def test_a_500_until_the_fix_holds_then_a_redrive_completes_with_each_effect_once(
    client: Client,
) -> None:
    p = plan(b="down-until-fixed")
    handle = await start(client, HOLD, p)
    state = await held(handle)
    assert state.parked_step == "b" and state.failed_step == "b"
    assert "bad deploy" in (state.error or "") and "(unavailable)" in (state.error or "")
    assert [s.status for s in state.steps] == [StepStatus.DONE, StepStatus.FAILED,
                                               StepStatus.PENDING]  # fmt: skip
    assert calls(p) == ["/a", "/b", "/b", "/b"]  # its retries spent; nothing undone
    events = len((await handle.fetch_history()).events)
    await asyncio.sleep(2)  # held: it waits on a condition, its history does not grow
    assert len((await handle.fetch_history()).events) == events
    described = await handle.describe()
    attrs = {pair.key.name: pair.value for pair in described.typed_search_attributes}
    assert attrs["SagaStatus"] == "HELD" and attrs["SagaStep"] == "b"  # saga list --status held
    fix(p, "/b")  # the fix is deployed
    await redrive(client, handle.id, note="PSP fixed", by="ops@test")
    result = await asyncio.wait_for(outcome(handle), 30)
    assert result.status is SagaStatus.COMPLETED
    assert calls(p) == ["/a", "/b", "/b", "/b", "/b", "/c"]  # no undo, b once more, then c
    assert keys(p, "/b") == {f"{handle.id}:b"}  # the same key: at most one effect
    await keep(handle, "redriven")
    assert result.report is not None
    (decision,) = result.report.decisions
    assert (decision.action, decision.step, decision.by, decision.note) == (
        "retry",
        "b",
        "ops@test",
        "PSP fixed",
    )


async def test_a_refusal_compensates_under_hold_but_holds_under_hold_all_and_gets_a_new_key(
    client: Client,
) -> None:
    refused = plan(b="reject")
    result = await asyncio.wait_for(outcome(await start(client, HOLD, refused)), 30)
    assert result.status is SagaStatus.COMPENSATED  # a business refusal: as always
    assert calls(refused) == ["/a", "/b", "/a/undo"]

    p = plan(b="refuse-until-fixed")
    handle = await start(client, HOLD_ALL, p)
    state = await held(handle)
    assert "(refused)" in (state.error or "")
    fix(p, "/b")
    await redrive(client, handle.id)
    assert (await asyncio.wait_for(outcome(handle), 30)).status is SagaStatus.COMPLETED
    await keep(handle, "refused-new-key")
    # the refusal was kept under the first key: the redrive went under a new one
    assert [k for at, k in KEYS[p["run"]] if at == "/b"] == [f"{handle.id}:b", f"{handle.id}:b~r1"]


async def test_redrive_with_a_corrected_input_or_a_request_patch_is_recorded_and_used(
    client: Client,
) -> None:
    p = plan(b="down-until-fixed")
    handle = await start(client, HOLD, p)
    await held(handle)
    with pytest.raises(WorkflowUpdateFailedError) as bad:  # the key cannot change
        await redrive(client, handle.id, input={**p, "run": "another"})
    assert "business key cannot change" in str(bad.value.cause)
    with pytest.raises(WorkflowUpdateFailedError) as bad:
        await redrive(client, handle.id, input={"run": p["run"], "amount": "lots"})
    assert "amount" in str(bad.value.cause)
    assert (await handle.query("saga_state", result_type=SagaState)).status is SagaStatus.HELD
    fix(p, "/b")
    await redrive(client, handle.id, input={**p, "amount": 99},
                  request_patch={"extra": "by hand"})  # fmt: skip
    assert (await asyncio.wait_for(outcome(handle), 30)).status is SagaStatus.COMPLETED
    bodies = [body for path, body in CALLS[p["run"]]]
    assert bodies[-2]["amount"] == 99 and bodies[-2]["extra"] == "by hand"  # the redriven b
    assert bodies[-1]["amount"] == 99 and "extra" not in bodies[-1]  # c: the new input only
    state = await handle.query("saga_state", result_type=SagaState)
    assert state.decisions[-1].input is not None and state.decisions[-1].request_patch
    await keep(handle, "input-patched")


async def test_mark_done_goes_on_with_the_output_given_and_compensate_undoes_what_ran(
    client: Client,
) -> None:
    p = plan(b="down-until-fixed")
    handle = await start(client, HOLD, p)
    await held(handle)
    with pytest.raises(WorkflowUpdateFailedError) as bad:  # the output must fit Out
        await mark_done(client, handle.id, "b", {"wrong": 1})
    assert "output.id" in str(bad.value.cause)
    with pytest.raises(WorkflowUpdateFailedError) as bad:
        await mark_done(client, handle.id, "a", {"id": "x"})
    assert "held step 'b'" in str(bad.value.cause)
    await mark_done(client, handle.id, "b", {"id": "by-hand"}, note="charged in the console")
    result = await asyncio.wait_for(outcome(handle), 30)
    assert result.status is SagaStatus.COMPLETED
    assert result.report is not None and result.report.outputs["b"] == {"id": "by-hand"}
    assert calls(p) == ["/a", "/b", "/b", "/b", "/c"]
    await keep(handle, "marked-done")

    q = plan(b="down-until-fixed")
    handle = await start(client, HOLD, q)
    await held(handle)
    await compensate_held(client, handle.id, note="give up")
    result = await asyncio.wait_for(outcome(handle), 30)
    assert result.status is SagaStatus.COMPENSATED
    assert calls(q) == ["/a", "/b", "/b", "/b", "/b/undo", "/a/undo"]  # b may have run
    await keep(handle, "compensated")


async def test_an_action_repeated_is_applied_once_and_one_on_a_saga_not_held_is_refused(
    client: Client,
) -> None:
    p = plan(b="down-until-fixed", c="down-until-fixed")
    handle = await start(client, HOLD, p)
    await held(handle)
    fix(p, "/b")
    await redrive(client, handle.id, id="once")
    await redrive(client, handle.id, id="once")  # the same action again: no-op
    state = await held(handle)  # c fails too: it holds, and waits — no decision is left over
    assert state.parked_step == "c"
    await asyncio.sleep(1)
    state = await handle.query("saga_state", result_type=SagaState)
    assert state.status is SagaStatus.HELD and [d.id for d in state.decisions] == ["once"]
    assert calls(p).count("/c") == 3
    fix(p, "/c")
    await redrive(client, handle.id, id="twice")
    result = await asyncio.wait_for(outcome(handle), 30)
    assert result.status is SagaStatus.COMPLETED
    assert result.report is not None
    assert [d.id for d in result.report.decisions] == ["once", "twice"]
    assert calls(p).count("/b") == 4 and calls(p).count("/c") == 4

    running = await start(client, HOLD, plan(a="slow"))
    with pytest.raises(WorkflowUpdateFailedError) as bad:
        await redrive(client, running.id)
    assert "not waiting for an operator" in str(bad.value.cause)
    await asyncio.wait_for(outcome(running), 30)


async def test_a_bug_in_a_step_builder_holds_and_the_deadline_still_compensates_a_held_saga(
    client: Client,
) -> None:
    p = plan(b="builder-bug")
    handle = await start(client, HOLD, p)
    state = await held(handle)
    assert "KeyError" in (state.error or "") and "(bug)" in (state.error or "")
    await compensate_held(client, handle.id)
    assert (await asyncio.wait_for(outcome(handle), 30)).status is SagaStatus.COMPENSATED

    q = plan(b="down-until-fixed")
    handle = await start(client, HOLD_DEADLINE, q)
    await held(handle)
    result = await asyncio.wait_for(outcome(handle), 30)  # nobody acts: the deadline does
    assert result.status is SagaStatus.COMPENSATED
    assert result.report is not None and "DeadlineExceeded" in (result.report.error or "")
    assert result.report.failed_step == "b"
    assert calls(q)[-2:] == ["/b/undo", "/a/undo"]
    await keep(handle, "deadline")


async def test_a_cancel_while_held_compensates(client: Client) -> None:
    p = plan(b="down-until-fixed")
    handle = await start(client, HOLD, p)
    await held(handle)
    await handle.cancel()
    result = await asyncio.wait_for(outcome(handle), 30)
    assert result.status is SagaStatus.CANCELED
    assert calls(p)[-2:] == ["/b/undo", "/a/undo"]
    await keep(handle, "cancelled")
