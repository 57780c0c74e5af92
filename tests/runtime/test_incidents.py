"""An incident on the real stack, as docs/operating.md's runbook has an operator handle it.

The payment participant (the demo's, built on the toolkit) answers 500 to every charge: a bad
deploy. Orders of the example ``GuardedOrderSaga`` (``on_failure="hold"``) that reach the charge
hold there, their stock reserved, instead of compensating. The operator finds them (``saga list
--status held``), counts them (``--dry-run``), deploys the fix, and redrives them all at a set
rate with a checkpoint — resumed after a "crash" without acting on any saga twice. Every order
completes, each charged once in the participant's own database.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio.client import WorkflowHandle

from sagaloom import SagaState, SagaStatus
from sagaloom.client import outcome, redrive, start_saga
from tests._helpers import TASK_QUEUE, Stack, cli, order
from workflows.guarded_order import GUARDED_ORDER

pytestmark = pytest.mark.integration


async def held(handle: WorkflowHandle[Any, Any], within: float = 90) -> SagaState:
    async with asyncio.timeout(within):
        while True:
            state = await handle.query("saga_state", result_type=SagaState)
            if state.status is SagaStatus.HELD:
                return state
            assert state.status in (SagaStatus.RUNNING, SagaStatus.WAITING), state
            await asyncio.sleep(0.3)


async def saga(stack: Stack, *args: str) -> Any:
    return await asyncio.to_thread(cli, *args, address=stack.address)


async def test_a_bad_deploy_holds_the_orders_and_one_bulk_redrive_completes_them_once(
    stack: Stack, key: str, tmp_path: Path
) -> None:
    for n in range(4):  # for good, until the fix
        await stack.fault("payment", op="do", match=f"{key}-{n}", mode="error", status=500)
    handles = [
        await start_saga(stack.client, GUARDED_ORDER, order(f"{key}-{n}"), task_queue=TASK_QUEUE)
        for n in range(4)
    ]
    states = await asyncio.gather(*(held(h) for h in handles))
    assert {s.parked_step for s in states} == {"charge-payment"}
    for n in range(4):  # held, not compensated: the stock stays reserved, nothing charged
        assert await stack.record("inventory", f"{key}-{n}") == "active"
        assert await stack.record("payment", f"{key}-{n}") == "absent"

    keys = ", ".join(f"'{key}-{n}'" for n in range(4))
    query = f"SagaName = 'GuardedOrderSaga' AND SagaStep = 'charge-payment' AND SagaKey IN ({keys})"
    async with asyncio.timeout(30):  # visibility catches up
        while True:
            listed = await saga(stack, "list", "--status", "held", "--saga", "GuardedOrderSaga",
                                "--json")  # fmt: skip
            mine = [r for r in json.loads(listed.stdout) if r["key"].startswith(key)]
            if len(mine) == 4:
                break
            await asyncio.sleep(0.5)
    assert {r["status"] for r in mine} == {"HELD"} and {r["step"] for r in mine} == {
        "charge-payment"
    }
    dry = await saga(stack, "redrive", "--query", query, "--dry-run")
    assert dry.returncode == 0 and dry.stdout.startswith("4 held saga(s) match"), dry.stdout
    shown = await saga(stack, "show", handles[0].id)
    assert "HELD at charge-payment" in shown.stdout

    async with httpx.AsyncClient() as http:  # the fix is deployed
        (await http.delete(f"{stack.services['payment']}/_admin/faults")).raise_for_status()
    # an earlier bulk run acted on one saga and died before it wrote it down
    checkpoint = tmp_path / "redrive.log"
    checkpoint.write_text(json.dumps({"run": "dead-run", "query": _held(query),
                                      "action": "redrive"}) + "\n")  # fmt: skip
    await redrive(stack.client, handles[0].id, id=f"bulk-dead-run:{handles[0].id}",
                  by="ops@died", note="first try")  # fmt: skip
    began = time.monotonic()
    run = await saga(stack, "redrive", "--query", query, "--rate", "2", "--checkpoint",
                     str(checkpoint), "--note", "PSP fixed", "--by", "ops@test")  # fmt: skip
    took = time.monotonic() - began
    assert run.returncode == 0, run.stdout + run.stderr
    assert "Traceback" not in run.stderr
    results = await asyncio.gather(*(asyncio.wait_for(outcome(h), 90) for h in handles))
    assert [r.status for r in results] == [SagaStatus.COMPLETED] * 4
    for n, result in enumerate(results):
        assert result.report is not None
        assert len(result.report.decisions) == 1, result.report.decisions  # acted on once
        assert await stack.record("payment", f"{key}-{n}") == "active"  # charged once
    assert results[0].report is not None and results[0].report.decisions[0].by == "ops@died"
    assert {r.report.decisions[0].note for r in results[1:] if r.report} == {"PSP fixed"}
    assert took >= (3 - 1) / 2  # three sagas at 2 a second: the rate held
    ats = sorted(r.report.decisions[0].at for r in results[1:] if r.report)
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(ats)]
    assert all(gap >= 0.5 * 0.8 for gap in gaps), gaps  # each decision taken 1/rate apart
    # the checkpoint lists every saga it acted on: a third run does nothing
    again = await saga(stack, "redrive", "--query", query, "--checkpoint", str(checkpoint),
                       "--json")  # fmt: skip
    assert json.loads(again.stdout)["acted"] == 0


def _held(query: str) -> str:
    return f'ExecutionStatus = "Running" AND SagaStatus = "HELD" AND ({query})'


async def test_operator_actions_are_refused_with_a_clear_line_when_they_do_not_fit(
    stack: Stack, key: str
) -> None:
    done = await start_saga(stack.client, GUARDED_ORDER, order(key), task_queue=TASK_QUEUE)
    assert (await outcome(done)).status is SagaStatus.COMPLETED
    for args in (
        ["redrive", done.id],
        ["compensate", done.id],
        ["mark-done", done.id, "--step", "charge-payment", "--output", "{}"],
        ["redrive", "no-such-saga"],
        ["redrive"],
        ["redrive", done.id, "--input", "[1]"],
    ):
        refused = await saga(stack, *args)
        assert refused.returncode == 2, (args, refused.stdout, refused.stderr)
        assert "Traceback" not in refused.stderr and len(refused.stderr.splitlines()) == 1, args
