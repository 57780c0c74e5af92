"""Property tests: random saga shapes and fault plans; outcome and call order follow the rules.

Cancel timing too: a step may hang until the saga is cancelled while it runs.
Each example is a real saga on the dev server (regular or local activities), driven by a
scripted participant; a small model says what must happen, and the run must match it exactly.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from temporalio.client import Client

from sagaloom import SagaStatus
from sagaloom.client import outcome, start_saga
from tests._sagas import (
    SHAPES,
    STEP_NAMES,
    LocalRulesSaga,
    Rules1Saga,
    Rules2Saga,
    Rules3Saga,
    RulesSaga,
)
from tests._scripted import CALLS
from tests.conftest import ScriptedWorker

pytestmark = pytest.mark.integration
QUEUE = "properties"
FORWARD = ["ok", "ok", "fail-once", "reject", "unavailable", "malformed"]
UNDO = ["ok", "fail-once"]


def model(
    length: int, forward: list[str], undo: list[str], *, fast: bool = False
) -> tuple[SagaStatus, str | None, list[str]]:
    """The outcome, the failed step and the exact participant calls the rules prescribe.

    ``fast``: the saga runs on local activities. Cancelled, it then undoes every later step
    too (a step run in a workflow task the cancel made the server refuse leaves no record;
    CHANGELOG, "cancellation edges"), later steps first, each undo of nothing a tombstone.
    """
    calls: list[str] = []
    started: list[int] = []
    failed: str | None = None
    for i in range(length):
        name, kind = STEP_NAMES[i], forward[i]
        started.append(i)  # compensation registered before the step runs
        if kind == "hang":  # cancelled while it runs: its outcome is unknown, so it is undone
            calls.append(f"/{name}")
            if fast:
                started += range(i + 1, length)
            for j in reversed(started):
                calls += [f"/{STEP_NAMES[j]}/undo"] * (2 if undo[j] == "fail-once" else 1)
            return SagaStatus.CANCELED, None, calls
        calls += [f"/{name}"] * (2 if kind in ("fail-once", "unavailable") else 1)
        if kind in ("reject", "unavailable", "malformed"):
            failed = name
            if kind == "reject":  # refused: nothing took effect, nothing to undo
                started.pop()
            break
    if failed is None:
        return SagaStatus.COMPLETED, None, calls
    for i in reversed(started):
        calls += [f"/{STEP_NAMES[i]}/undo"] * (2 if undo[i] == "fail-once" else 1)
    return SagaStatus.COMPENSATED, failed, calls


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def client(scripted_worker: ScriptedWorker, temporal: Client) -> AsyncIterator[Client]:
    sagas = [Rules1Saga, Rules2Saga, Rules3Saga, RulesSaga, LocalRulesSaga]
    async with scripted_worker(QUEUE, sagas):
        yield temporal


@settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    length=st.integers(1, 4),
    forward=st.lists(st.sampled_from(FORWARD), min_size=4, max_size=4),
    undo=st.lists(st.sampled_from(UNDO), min_size=4, max_size=4),
    local=st.booleans(),
    cancel_at=st.one_of(st.none(), st.integers(0, 3)),
)
async def test_any_shape_and_fault_plan_follows_the_rules(
    client: Client,
    length: int,
    forward: list[str],
    undo: list[str],
    local: bool,
    cancel_at: int | None,
) -> None:
    if cancel_at is not None and cancel_at < length:  # cancel while that step runs
        forward = [*forward[:cancel_at], "hang", *forward[cancel_at + 1 :]]
        forward[:cancel_at] = [k if k in ("ok", "fail-once") else "ok" for k in forward[:cancel_at]]
    import dataclasses

    saga: Any = SHAPES[length]
    fast = local and length == 4  # (the local-activity saga registered here has four steps)
    if fast:
        saga = dataclasses.replace(saga, name="LocalRulesSaga", local_activities=True)
    run = uuid.uuid4().hex[:10]
    steps = {STEP_NAMES[i]: forward[i] for i in range(length)}
    steps |= {f"undo-{STEP_NAMES[i]}": undo[i] for i in range(length)}
    handle = await start_saga(client, saga, {"run": run, "steps": steps}, task_queue=QUEUE)
    if "hang" in forward[:length]:
        hung = f"/{STEP_NAMES[forward.index('hang')]}"
        for _ in range(600):  # the hanging call has reached the participant
            if hung in [path for path, _ in CALLS[run]]:
                break
            await asyncio.sleep(0.05)
        await handle.cancel()
    result = await outcome(handle)
    status, failed, calls = model(length, forward, undo, fast=fast)
    assert result.status is status
    assert (result.report.failed_step if result.report else None) == failed
    assert [path for path, _ in CALLS[run]] == calls
    if result.report is not None and status is SagaStatus.COMPENSATED:
        assert all(c.ok for c in result.report.compensations)
