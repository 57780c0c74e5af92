"""``saga show --items`` lists every item of a fan-out, however the saga ended (docs/fanout.md:
"every item with how it ended"), with its worker running or gone: completed, compensated,
cancelled, parked, a batch terminated by hand, and a failure in the first batch that leaves
later batches never started. The expectation of each row comes from what the participant saw
(each call recorded by the scripted participant), not from the engine's own record."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter
from typing import Any

import pytest
from temporalio.client import Client, WorkflowHandle

from sagaloom import SagaStatus
from sagaloom._runtime._items import ItemsWorkflow
from sagaloom.client import outcome, start_saga
from tests._fanout_sagas import FAN, FAN_SAGAS
from tests._helpers import cli, wait_for_status
from tests._scripted import CALLS
from tests.conftest import ScriptedWorker

pytestmark = pytest.mark.integration


def plan(*items: str | tuple[str, str], after: str = "ok") -> dict[str, Any]:
    run = uuid.uuid4().hex[:8]
    rows = []
    for n, what in enumerate(items):
        do, undo = (what, "ok") if isinstance(what, str) else what
        rows.append({"id": f"i{n}", "do": do, "undo": undo})
    return {"run": run, "items": rows, "after": after}


def called(p: dict[str, Any]) -> Counter[str]:
    """Forward calls per item, as the participant saw them."""
    return Counter(
        path.split("/")[2]
        for path, _ in CALLS[p["run"]]
        if path.startswith("/book/") and not path.endswith("/undo")
    )


def undone(p: dict[str, Any]) -> Counter[str]:
    return Counter(path.split("/")[2] for path, _ in CALLS[p["run"]] if path.endswith("/undo"))


async def show(address: str, workflow_id: str) -> dict[str, Any]:
    run = await asyncio.to_thread(cli, "show", workflow_id, "--items", "--json", address=address)
    assert run.returncode == 0, run.stderr
    assert "Traceback" not in run.stderr
    return dict(json.loads(run.stdout))


def check_rows(shown: dict[str, Any], p: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every item listed once, in index order; each row agrees with the participant's record."""
    rows = shown["item_rows"]
    assert [r["index"] for r in rows if r["step"] == "book"] == list(range(len(p["items"])))
    made, back = called(p), undone(p)
    by_key: dict[str, dict[str, Any]] = {}
    for row in rows:
        key = f"i{row['index']}"
        if row["key"] != "-":
            assert row["key"] == key
        by_key[key] = row
        if made[key] == 0:  # never called: never started, never undone
            assert row["status"] in ("not_started", "refused", "cancelled"), row
            assert row["undo"] in ("-", "undone"), row
        if row["status"] == "not_started":
            assert made[key] == 0 and back[key] == 0, row
        if back[key]:
            assert row["undo"] in ("undone", "undo_failed"), row
        else:
            assert row["undo"] == "-", row
    return by_key


async def test_every_ending_lists_every_item_with_the_worker_running_and_gone(
    scripted_worker: ScriptedWorker, temporal: Client, dev_server: Any
) -> None:
    queue = f"fan-show-{uuid.uuid4().hex[:6]}"
    address = dev_server.address
    completed, compensated = plan(*["ok"] * 6), plan(*["ok"] * 6, after="reject")
    # a refusal in the first batch of four (three at a time; i0 and i2 slow, so no slot frees
    # before i1's refusal): i3 and the two later batches never start
    first_batch = plan("slow", "reject", "slow", "ok", *["ok"] * 8)
    parked = plan("ok", ("ok", "reject"), "ok", after="reject")
    # batch 1 (i4-i7) terminated by hand while its items hang
    lost = plan("ok", "ok", "ok", "ok", "hang", "hang", "ok", "ok")
    cancelled = plan("ok", "ok", "ok", "ok", "hang", "hang", "ok", "ok", "ok", "ok")

    async def start(p: dict[str, Any]) -> WorkflowHandle[Any, Any]:
        return await start_saga(temporal, FAN, p, task_queue=queue)

    async with scripted_worker(queue, [*FAN_SAGAS, ItemsWorkflow]):
        handles = {name: await start(p) for name, p in (
            ("completed", completed), ("compensated", compensated),
            ("first_batch", first_batch), ("parked", parked), ("lost", lost),
            ("cancelled", cancelled),
        )}  # fmt: skip
        await _until(lambda: called(lost)["i4"] and called(lost)["i5"])
        await temporal.get_workflow_handle(f"{handles['lost'].id}:book:items-1").terminate("hand")
        # i4 and i5 hang in their slots; i6 ends and i7 takes its slot: cancel once it did (the
        # later batch, i8 and i9, never starts), so the rows below hold on a loaded machine too
        await _until(lambda: all(called(cancelled)[k] for k in ("i4", "i5", "i7")))
        await handles["cancelled"].cancel()
        await wait_for_status(handles["parked"], SagaStatus.NEEDS_ATTENTION)
        ended = {name: (await outcome(h)).status for name, h in handles.items() if name != "parked"}
        assert ended == {
            "completed": SagaStatus.COMPLETED,
            "compensated": SagaStatus.COMPENSATED,
            "first_batch": SagaStatus.COMPENSATED,
            "lost": SagaStatus.COMPENSATED,
            "cancelled": SagaStatus.CANCELED,
        }
        running = {name: await show(address, h.id) for name, h in handles.items()}
    gone = {name: await show(address, h.id) for name, h in handles.items()}  # no worker now

    for shown in (running, gone):
        rows = check_rows(shown["completed"], completed)
        assert {r["status"] for r in rows.values()} == {"done"}

        rows = check_rows(shown["compensated"], compensated)
        assert all(r["status"] == "done" and r["undo"] == "undone" for r in rows.values())

        rows = check_rows(shown["first_batch"], first_batch)
        assert rows["i1"]["status"] == "refused" and rows["i1"]["undo"] == "-"
        never = [k for k, r in rows.items() if r["status"] == "not_started"]
        assert never == [f"i{n}" for n in range(3, 12)]  # i3, and the batches never reached

        rows = check_rows(shown["parked"], parked)
        assert rows["i1"]["undo"] == "undo_failed"
        assert shown["parked"]["status"] == "NEEDS_ATTENTION"

        rows = check_rows(shown["lost"], lost)
        for key in ("i4", "i5", "i6", "i7"):  # each may have run: listed, and undone
            assert rows[key]["status"] == "cancelled" and rows[key]["undo"] == "undone"
            assert "without reporting" in rows[key]["error"]

        rows = check_rows(shown["cancelled"], cancelled)
        assert shown["cancelled"]["status"] == "CANCELED"
        step = next(s for s in shown["cancelled"]["steps"] if s["name"] == "book")
        assert step["items"]["total"] == 10  # the step and its count, from history
        for key in ("i4", "i5"):  # running when cancelled: may have taken effect
            assert rows[key]["status"] == "cancelled" and rows[key]["undo"] == "undone"
        assert [k for k, r in rows.items() if r["status"] == "not_started"] == ["i8", "i9"]

    table = await asyncio.to_thread(
        cli, "show", handles["first_batch"].id, "--items", address=address
    )
    assert table.returncode == 0, table.stderr
    assert "book: 12 items: 2 done, 9 not started, 1 refused" in table.stdout
    # the parked run would stay parked on the shared server, and the namespace-wide parked
    # gauges of later tests (the SagaParked alert) would count it
    await handles["parked"].terminate("test over")


async def _until(ready: Any, within: float = 30) -> None:
    async with asyncio.timeout(within):
        while True:
            if ready():
                return
            await asyncio.sleep(0.05)
