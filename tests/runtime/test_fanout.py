"""Fan-out (``ForEach``): each item once, at most ``max_concurrency`` at a time, and exactly the
items that took or may have taken effect undone — when a later step fails, when items fail past
``tolerate``, when the saga is cancelled mid fan-out. Scripted participants, real dev server."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from temporalio.client import Client, WorkflowHandle

from sagaloom import Resolution, SagaInputError, SagaState, SagaStatus, StepStatus
from sagaloom._runtime._items import ItemsWorkflow
from sagaloom.client import outcome, start_saga
from tests._fanout_sagas import FAN, FAN_SAGAS, TOLERANT, TOLERANT_BATCHED
from tests._helpers import wait_for_status
from tests._scripted import CALLS, ENDED, GATES, STARTED
from tests.conftest import ScriptedWorker

pytestmark = pytest.mark.integration
QUEUE = "fan-out"


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def client(scripted_worker: ScriptedWorker, temporal: Client) -> AsyncIterator[Client]:
    # (the plugin registers the batch workflow; this plain worker is given it by hand)
    async with scripted_worker(QUEUE, [*FAN_SAGAS, ItemsWorkflow]):
        yield temporal


def plan(*items: str | tuple[str, str], after: str = "ok") -> dict[str, Any]:
    """A plan: item ``i<n>`` does what is given (``("reject", "ok")``: forward, undo)."""
    run = uuid.uuid4().hex[:8]
    rows = []
    for n, what in enumerate(items):
        do, undo = (what, "ok") if isinstance(what, str) else what
        rows.append({"id": f"i{n}", "do": do, "undo": undo})
    return {"run": run, "items": rows, "after": after}


async def start(client: Client, saga: Any, p: dict[str, Any]) -> WorkflowHandle[Any, Any]:
    return await start_saga(client, saga, p, task_queue=QUEUE)


def calls(p: dict[str, Any]) -> list[str]:
    return [path for path, _ in CALLS[p["run"]]]


def booked(p: dict[str, Any]) -> list[str]:
    """Items whose forward call was made (each once)."""
    return [c.split("/")[2] for c in calls(p) if c.startswith("/book/") and "undo" not in c]


def undone(p: dict[str, Any]) -> Counter[str]:
    return Counter(c.split("/")[2] for c in calls(p) if c.endswith("/undo"))


def most_at_once(p: dict[str, Any]) -> int:
    """Most forward item calls in flight at once, by the participant's clock."""
    edges = [(t, 1) for path, t in STARTED[p["run"]] if path.startswith("/book/")]
    edges += [(t, -1) for path, t in ENDED[p["run"]] if path.startswith("/book/")]
    level = most = 0
    for _, step in sorted(edges, key=lambda e: (e[0], e[1])):
        level += step
        most = max(most, level)
    return most


async def test_every_item_once_in_input_order_at_most_the_window_at_once(client: Client) -> None:
    p = plan(*["slow"] * 7)  # each call takes ~2 s: seven of them overlap if allowed to
    result = await outcome(await start(client, FAN, p))

    assert result.status is SagaStatus.COMPLETED
    assert result.report is not None
    outputs = result.report.outputs["book"]
    assert [o["id"] for o in outputs] == ["book-1"] * 7
    assert sorted(booked(p)) == [f"i{n}" for n in range(7)]
    assert most_at_once(p) == 3  # max_concurrency=3: reached, never exceeded
    book = result.report.steps[0]
    assert book.items is not None
    assert (book.items.total, book.items.done, book.items.failed) == (7, 7, 0)
    assert calls(p)[-1] == "/after"


async def test_undos_go_batch_by_batch_in_reverse_at_most_the_window_at_once(
    client: Client,
) -> None:
    # fanout.md: "Compensations run in reverse batch order, each batch's items at most
    # `max_concurrency` at a time". FAN: batches of 4, 3 at a time; nine items are the batches
    # i0-i3, i4-i7, i8, and each undo takes ~2 s, so the order and the overlap both show.
    p = plan(*[("ok", "slow")] * 9, after="reject")
    result = await asyncio.wait_for(outcome(await start(client, FAN, p)), 90)
    assert result.status is SagaStatus.COMPENSATED
    assert undone(p) == Counter({f"i{n}": 1 for n in range(9)})
    run = p["run"]
    began = {path.split("/")[2]: t for path, t in STARTED[run] if path.endswith("/undo")}
    ended = {path.split("/")[2]: t for path, t in ENDED[run] if path.endswith("/undo")}
    batches = [["i8"], [f"i{n}" for n in range(4, 8)], [f"i{n}" for n in range(4)]]
    for later, earlier in itertools.pairwise(batches):  # a batch is undone before the one before
        assert max(ended[i] for i in later) <= min(began[i] for i in earlier), (began, ended)
    edges = sorted([(t, 1) for t in began.values()] + [(t, -1) for t in ended.values()],
                   key=lambda e: (e[0], e[1]))  # fmt: skip
    level, most = 0, 0
    for _, change in edges:
        level += change
        most = max(most, level)
    assert most == 3  # a batch of four, three at a time: reached, never exceeded


async def test_a_later_step_failing_undoes_exactly_the_items_done_each_once(
    client: Client,
) -> None:
    p = plan("ok", "ok", "ok", "ok", "ok", after="reject")
    result = await outcome(await start(client, FAN, p))

    assert result.status is SagaStatus.COMPENSATED
    assert result.report is not None and result.report.failed_step == "after"
    assert undone(p) == Counter({f"i{n}": 1 for n in range(5)})
    # the undo got what the item's action gave
    undo_bodies = [b for path, b in CALLS[p["run"]] if path.endswith("/undo")]
    assert all(b["booked"] == {"id": "book-1"} for b in undo_bodies)
    assert result.report.steps[0].items is not None
    assert result.report.steps[0].items.undone == 5


async def test_an_item_refused_fails_the_step_and_only_items_that_may_have_run_are_undone(
    client: Client,
) -> None:
    p = plan("ok", "ok", "reject", "ok", "ok", "ok", "ok", "ok", "ok")
    result = await outcome(await start(client, FAN, p))

    assert result.status is SagaStatus.COMPENSATED
    assert result.report is not None and result.report.failed_step == "book"
    assert "i2" in (result.report.error or "")
    made = booked(p)
    assert "i2" in made and len(made) < 9  # the fan-out stopped starting items
    assert "i2" not in undone(p)  # refused: nothing took effect
    assert undone(p) == Counter({item: 1 for item in made if item != "i2"})
    assert "/after" not in calls(p)


async def test_an_item_out_of_retries_may_have_taken_effect_so_it_is_undone(
    client: Client,
) -> None:
    p = plan("ok", "unavailable", "ok")
    result = await outcome(await start(client, FAN, p))

    assert result.status is SagaStatus.COMPENSATED
    assert undone(p) == Counter({"i0": 1, "i1": 1, "i2": 1})


async def test_tolerated_failures_complete_the_step_and_undo_at_once_only_what_may_have_run(
    client: Client,
) -> None:
    p = plan("ok", "reject", "unavailable", "ok")
    result = await outcome(await start(client, TOLERANT, p))

    assert result.status is SagaStatus.COMPLETED
    assert result.report is not None
    outputs = result.report.outputs["book"]
    assert [o is None for o in outputs] == [False, True, True, False]
    assert undone(p) == Counter({"i2": 1})  # out of retries: undone; refused: left alone
    items = result.report.steps[0].items
    assert items is not None and (items.done, items.failed, items.undone) == (2, 2, 1)
    assert any(f.startswith("i1: ") for f in items.failures)


async def test_a_tolerated_item_already_undone_is_not_undone_again_when_the_saga_fails(
    client: Client,
) -> None:
    p = plan("ok", "unavailable", "ok", after="reject")
    result = await outcome(await start(client, TOLERANT, p))

    assert result.status is SagaStatus.COMPENSATED
    assert undone(p) == Counter({"i0": 1, "i1": 1, "i2": 1})


async def test_failures_past_tolerate_fail_the_step_and_compensate(client: Client) -> None:
    p = plan("reject", "reject", "reject", "ok")
    result = await outcome(await start(client, TOLERANT, p))

    assert result.status is SagaStatus.COMPENSATED
    assert result.report is not None and result.report.failed_step == "book"
    assert "3 of 4 items failed (tolerated: 2)" in (result.report.error or "")
    assert not {"i0", "i1", "i2"} & set(undone(p))


async def test_an_empty_list_is_a_step_done_with_no_items(client: Client) -> None:
    p = plan()
    result = await outcome(await start(client, FAN, p))

    assert result.status is SagaStatus.COMPLETED
    assert result.report is not None and result.report.outputs["book"] == []
    assert calls(p) == ["/after"]


async def test_duplicate_item_keys_are_refused_before_the_start(client: Client) -> None:
    p = plan("ok", "ok")
    p["items"][1]["id"] = "i0"
    with pytest.raises(SagaInputError) as raised:
        await start(client, FAN, p)
    assert raised.value.problems[0][0] == "items[1]"
    assert "duplicate item key 'i0'" in str(raised.value)
    assert calls(p) == []


async def test_cancel_mid_fan_out_undoes_what_ran_and_what_was_running(client: Client) -> None:
    # batch of 4, 3 at a time: i0 done at once, i1 and i2 wait at their gates, i3 runs after i0
    p = plan("ok", "gate", "gate", "hang", "ok", "ok")
    handle = await start(client, FAN, p)
    state = await _wait_for(handle, lambda s: _running(s) and len(booked(p)) >= 4)
    assert state.steps[0].status is StepStatus.RUNNING
    assert state.steps[0].items is not None and state.steps[0].items.total == 6
    await handle.cancel()
    result = await outcome(handle)

    assert result.status is SagaStatus.CANCELED
    made = booked(p)
    assert sorted(made) == ["i0", "i1", "i2", "i3"]  # i4, i5: never started
    assert undone(p) == Counter({item: 1 for item in made})
    for gate in ("/book/i1", "/book/i2"):
        GATES[f"{p['run']}{gate}"].set()


async def test_an_item_undo_failing_parks_the_saga_and_a_retry_undoes_only_what_is_left(
    client: Client,
) -> None:
    p = plan("ok", ("ok", "reject-once"), "ok", after="reject")
    handle = await start(client, FAN, p)
    await wait_for_status(handle, SagaStatus.NEEDS_ATTENTION)
    state = await handle.query("saga_state", result_type=SagaState)
    assert state.parked_step == "book"
    assert "1 item(s) not undone: i1" in (state.steps[0].compensation_error or "")
    assert undone(p) == Counter({"i0": 1, "i1": 1, "i2": 1})
    await handle.execute_update("resolve", Resolution(action="retry", note="fixed"))
    result = await outcome(handle)

    assert result.status is SagaStatus.COMPENSATED
    assert undone(p) == Counter({"i0": 1, "i1": 2, "i2": 1})  # only i1 again


async def test_an_output_too_large_for_its_batch_fails_the_item_which_is_then_undone(
    client: Client,
) -> None:
    p = plan("big", "big", "big", "big", "ok")  # 300 kB each: the fourth passes 1 MB
    result = await outcome(await start(client, FAN, p))

    assert result.status is SagaStatus.COMPENSATED
    assert result.report is not None and "OutputTooLarge" in (result.report.error or "")
    assert sorted(booked(p)) == ["i0", "i1", "i2", "i3"]  # i4 never started
    assert undone(p) == Counter({"i0": 1, "i1": 1, "i2": 1, "i3": 1})  # i3 took effect too


def _running(state: SagaState) -> bool:
    items = state.steps[0].items
    return items is not None and items.running > 0


async def _wait_for(handle: WorkflowHandle[Any, Any], ready: Any, within: float = 30) -> SagaState:
    async with asyncio.timeout(within):
        while True:
            state = await handle.query("saga_state", result_type=SagaState)
            if ready(state):
                return state
            await asyncio.sleep(0.1)


async def test_a_batch_terminated_by_hand_undoes_every_item_it_held_and_those_before(
    client: Client,
) -> None:
    p = plan("ok", "ok", "ok", "ok", "hang", "hang", "ok", "ok")  # batch 2: i4-i7
    handle = await start(client, FAN, p)
    await _wait_for(handle, lambda s: "i4" in booked(p) and "i5" in booked(p))
    await client.get_workflow_handle(f"{handle.id}:book:items-1").terminate("by hand")
    result = await outcome(handle)

    assert result.status is SagaStatus.COMPENSATED
    assert result.report is not None and "ItemsBatchLost" in (result.report.error or "")
    # its results are lost: each of i4-i7 may have run, so each is undone (never started: a
    # tombstone at the participant); and those of the first batch, each once
    assert undone(p) == Counter({f"i{n}": 1 for n in range(8)})


async def test_a_tolerance_spent_in_one_batch_is_exceeded_in_a_later_one(client: Client) -> None:
    """docs/fanout.md: ``tolerate`` counts failures across the whole step (batches of four here):
    one refused in the first batch and one in the second is at the limit — the step completes;
    a third, in the third batch, is past it — no further item starts and the step fails."""
    at_limit = plan(*["ok"] * 12)
    at_limit["items"][1]["do"] = at_limit["items"][5]["do"] = "reject"
    result = await outcome(await start(client, TOLERANT_BATCHED, at_limit))
    assert result.status is SagaStatus.COMPLETED
    assert sorted(booked(at_limit)) == sorted(f"i{n}" for n in range(12))
    assert undone(at_limit) == Counter()  # the refused took no effect

    past = plan(*["ok"] * 12)
    for n in (1, 5, 8):
        past["items"][n]["do"] = "reject"
    # i9 runs beside i8 (two at a time): slow, so that i8's refusal, the third, is counted
    # before a slot frees (an i9 done first would start i10 while only two had failed)
    past["items"][9]["do"] = "slow"
    result = await outcome(await start(client, TOLERANT_BATCHED, past))
    assert result.status is SagaStatus.COMPENSATED
    assert result.report is not None and "3 of 12 items failed (tolerated: 2)" in (
        result.report.error or ""
    )
    made = set(booked(past))
    assert {"i10", "i11"}.isdisjoint(made)  # past the limit, nothing more started
    assert {f"i{n}" for n in (0, 2, 3, 4, 6, 7)} <= made
    assert set(undone(past)) == made - {"i1", "i5", "i8"}  # done ones undone, refused not
