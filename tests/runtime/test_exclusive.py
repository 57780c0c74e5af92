"""Exclusive keys: two transfers on one account, without isolation and with it.

An account opens at 100.00. A transfer of 80.00 to a frozen account debits, holds 3 s (half
done), then its credit is refused and the debit reversed. A transfer of 50.00 from the same
account, started meanwhile:

* without exclusive keys, it reads the half-done balance (20.00) and is refused — on a balance
  that never stood (the saga literature's "dirty read");
* with ``exclusive=`` on the accounts, it waits (status WAITING, naming the key and the holder)
  until the first transfer ended, then goes through.

Then: many random interleavings never overlap two holders of a key (checked from the
histories); keys are released however a saga ends (completed, compensated, cancelled, timed
out, terminated); a child saga shares its parent's keys; bad keys fail before the start.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import random
import signal
import sqlite3
import uuid
import zlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from unittest.mock import ANY

import httpx
import pytest
import pytest_asyncio
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig
from temporalio.worker import Replayer, Worker

from activities.ledger import entries
from sagaloom import (
    EXCLUSIVE_TIMEOUT,
    Resolution,
    SagaInputError,
    SagaState,
    SagaStatus,
)
from sagaloom._runtime._keyrules import EarlyKeys
from sagaloom.client import connect, outcome, saga_events, start_saga
from sagaloom.client._keydesk import desk_of
from sagaloom.participants import Breakers
from sagaloom.server import DevServer, DevServerOptions, NatsServer, free_port
from sagaloom.worker import SagaloomPlugin
from tests._exclusive_sagas import (
    ACTIVITIES,
    EVENTFUL,
    EXCLUSIVE,
    EXCLUSIVE_GATED,
    GATES,
    IMPATIENT,
    LATE,
    NESTED,
    PLAIN_GATED,
    SAGAS,
    STUCK,
    WIDE,
)
from tests._helpers import cli

pytestmark = pytest.mark.integration


@pytest_asyncio.fixture(loop_scope="session")
async def queue(
    temporal: Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[str]:
    monkeypatch.setenv("LEDGER_DB", str(tmp_path / "ledger.sqlite3"))
    name = f"exclusive-{uuid.uuid4().hex[:6]}"
    plugin = SagaloomPlugin(services={}, breakers=Breakers(None))
    async with Worker(
        temporal, task_queue=name, workflows=SAGAS, activities=ACTIVITIES, plugins=[plugin]
    ):
        yield name


def transfer(tid: str, source: str, target: str, cents: int, hold: float = 0) -> dict[str, Any]:
    return {"transfer_id": tid, "source": source, "target": target, "amount_cents": cents,
            "hold_seconds": hold}  # fmt: skip


async def state(handle: WorkflowHandle[Any, Any]) -> SagaState:
    return await handle.query("saga_state", result_type=SagaState)


async def until(check: Any, within: float = 20) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, "not within the time"
        await asyncio.sleep(0.1)


@pytest.mark.parametrize("saga", [PLAIN_GATED, EXCLUSIVE_GATED], ids=["plain", "exclusive"])
async def test_a_transfer_never_decides_on_another_ones_half_done_debit(
    temporal: Client, dev_server: DevServer, queue: str, saga: Any
) -> None:
    # The interleaving is forced: the first transfer stays half done (debited, not credited)
    # until the test opens its gate, however slow the machine.
    run = uuid.uuid4().hex[:6]
    account = f"acc-{run}"
    first = await start_saga(temporal, saga, {**transfer(f"{run}-1", account, f"frozen-{run}",
                                                         8_000), "gated": True},
                             task_queue=queue)  # fmt: skip
    await until(lambda: _debited(f"{saga.name}-{run}-1:"))  # half done: debited, held
    second = await start_saga(temporal, saga, transfer(f"{run}-2", account, f"other-{run}", 5_000),
                              task_queue=queue)  # fmt: skip
    if saga is EXCLUSIVE_GATED:  # it waits, and says for what
        await until(lambda: _status(second, SagaStatus.WAITING))
        waiting = await state(second)
        assert waiting.waiting_for_key == f"account:{account}"
        assert waiting.key_holder == first.id
        assert all(s.status.value == "pending" for s in waiting.steps)  # no step ran
        shown = await asyncio.to_thread(cli, "show", second.id, address=dev_server.address)
        assert f"waits for key account:{account} (held by {first.id})" in shown.stdout
        locks = await asyncio.to_thread(cli, "locks", "--key", account, "--json",
                                        address=dev_server.address)  # fmt: skip
        assert json.loads(locks.stdout) == [
            {"key": f"account:{account}", "task_queue": "sagaloom-keys", "holder": first.id,
             "since": ANY, "sharing": [], "waiting": [second.id]}
        ]  # fmt: skip
        assert (await state(first)).status is SagaStatus.RUNNING  # still half done
    else:  # the second decides while the first is still half done
        second_result = await asyncio.wait_for(outcome(second), 60)
        assert (await state(first)).status is SagaStatus.RUNNING
    GATES.setdefault(f"{run}-1", asyncio.Event()).set()
    results = [await asyncio.wait_for(outcome(h), 60) for h in (first, second)]

    assert results[0].status is SagaStatus.COMPENSATED  # the frozen account refused the credit
    moved = entries(f"{saga.name}-{run}-2:")
    if saga is PLAIN_GATED:  # the anomaly: refused on a balance (20.00) that never stood
        assert second_result == results[1]
        assert results[1].status is SagaStatus.COMPENSATED
        assert results[1].report is not None
        assert "insufficient funds" in (results[1].report.error or "")
        assert moved.get(account, 0) == 0
    else:  # serial: the first transfer was undone, the second found 100.00
        assert results[1].status is SagaStatus.COMPLETED
        assert moved == {account: -5_000, f"other-{run}": 5_000}
        replayer = Replayer(workflows=SAGAS, plugins=[SagaloomPlugin(services={})])
        for handle in (first, second):
            await replayer.replay_workflow(await handle.fetch_history())
        shards = 0  # and the key shards that granted them (run outside the sandbox)
        async for run in temporal.list_workflows('WorkflowType = "SagaloomKeyShard"'):
            shard = temporal.get_workflow_handle(run.id, run_id=run.run_id)
            await replayer.replay_workflow(await shard.fetch_history())
            shards += 1
        assert shards >= 1


@pytest.mark.long  # random schedules; the forced interleavings above run in CI
async def test_random_interleavings_never_have_two_holders_of_a_key(
    temporal: Client, queue: str
) -> None:
    """Transfers over three accounts, random amounts, holds and refusals, started at random
    moments: from the histories, the runs that share an account never overlap."""
    rng = random.Random(20261130)
    for round_ in range(3):
        run = uuid.uuid4().hex[:6]
        accounts = [f"acc-{run}-{i}" for i in range(3)]
        plans = []
        for i in range(8):
            source, target = rng.sample(accounts, 2)
            if rng.random() < 0.25:
                target = f"frozen-{run}-{i}"  # this one fails at its credit, and is undone
            plans.append(transfer(f"{run}-{i}", source, target, rng.randrange(1_000, 9_000),
                                  hold=rng.choice([0, 0.2, 0.5])))  # fmt: skip
        handles = []
        for plan in plans:
            handles.append(await start_saga(temporal, EXCLUSIVE, plan, task_queue=queue))
            await asyncio.sleep(rng.choice([0, 0.05, 0.3]))
        await asyncio.gather(*(asyncio.wait_for(outcome(h), 120) for h in handles))
        windows = [await _window(h) for h in handles]
        for i, a in enumerate(plans):
            for j in range(i + 1, len(plans)):
                b = plans[j]
                if not {a["source"], a["target"]} & {b["source"], b["target"]}:
                    continue
                (a0, a1), (b0, b1) = windows[i], windows[j]
                assert a1 <= b0 or b1 <= a0, f"round {round_}: {a} and {b} overlapped"
        moved = entries(f"{EXCLUSIVE.name}-{run}-")
        assert all(10_000 + moved.get(account, 0) >= 0 for account in accounts)


async def test_sagas_taking_the_same_keys_in_opposite_orders_never_deadlock(
    temporal: Client, queue: str
) -> None:
    """Pairs of transfers A->B and B->A, all started at once: each takes its two keys in the
    one global order, so no pair ends up holding one key each, waiting for the other."""
    run = uuid.uuid4().hex[:6]
    plans = []
    for pair in range(6):
        a, b = f"acc-{run}-{pair}-a", f"acc-{run}-{pair}-b"
        plans += [transfer(f"{run}-{pair}-ab", a, b, 100, hold=0.2),
                  transfer(f"{run}-{pair}-ba", b, a, 100, hold=0.2)]  # fmt: skip
    handles = await asyncio.gather(
        *(start_saga(temporal, IMPATIENT, plan, task_queue=queue) for plan in plans)
    )
    results = await asyncio.gather(*(asyncio.wait_for(outcome(h), 60) for h in handles))
    assert [r.status for r in results] == [SagaStatus.COMPLETED] * len(plans)


async def test_keys_are_released_however_the_saga_ends(temporal: Client, queue: str) -> None:
    run = uuid.uuid4().hex[:6]
    account = f"acc-{run}"

    async def next_one_goes_through(name: str) -> None:
        after = await start_saga(temporal, EXCLUSIVE, transfer(f"{run}-after-{name}", account,
                                 f"x-{run}", 100), task_queue=queue)  # fmt: skip
        result = await asyncio.wait_for(outcome(after), 30)
        assert result.status is SagaStatus.COMPLETED, name

    done = await start_saga(temporal, EXCLUSIVE, transfer(f"{run}-ok", account, f"x-{run}", 100),
                            task_queue=queue)  # fmt: skip
    assert (await outcome(done)).status is SagaStatus.COMPLETED
    await next_one_goes_through("completed")

    undone = await start_saga(temporal, EXCLUSIVE, transfer(f"{run}-no", account,
                              f"frozen-{run}", 100), task_queue=queue)  # fmt: skip
    assert (await outcome(undone)).status is SagaStatus.COMPENSATED
    await next_one_goes_through("compensated")

    cancelled = await start_saga(temporal, EXCLUSIVE, transfer(f"{run}-cancel", account,
                                 f"x-{run}", 100, hold=60), task_queue=queue)  # fmt: skip
    await until(lambda: _step_running(cancelled, "hold"))
    waiter = await start_saga(temporal, EXCLUSIVE, transfer(f"{run}-waiter", account, f"x-{run}",
                              100), task_queue=queue)  # fmt: skip
    await until(lambda: _status(waiter, SagaStatus.WAITING))
    await cancelled.cancel()
    assert (await outcome(cancelled)).status is SagaStatus.CANCELED
    assert (await asyncio.wait_for(outcome(waiter), 30)).status is SagaStatus.COMPLETED
    # Each ending released the key itself (not the lock noticing a closed holder later).
    released = await _releases(temporal, f"account:{account}")
    assert {done.id, undone.id, cancelled.id, waiter.id} <= released

    late = await start_saga(temporal, LATE, transfer(f"{run}-late", account, f"x-{run}", 100,
                            hold=60), task_queue=queue)  # fmt: skip
    result = await asyncio.wait_for(outcome(late), 30)  # past its deadline: compensated
    assert result.status is SagaStatus.COMPENSATED and "DeadlineExceeded" in (result.error or "")
    await next_one_goes_through("past its deadline")
    assert late.id in await _releases(temporal, f"account:{account}")

    terminated = await start_saga(temporal, EXCLUSIVE, transfer(f"{run}-term", account,
                                  f"x-{run}", 100, hold=600), task_queue=queue)  # fmt: skip
    await until(lambda: _step_running(terminated, "hold"))
    await terminated.terminate("an operator")  # it never releases: the lock notices
    await next_one_goes_through("terminated")


async def test_a_parked_saga_keeps_its_keys_until_an_operator_resolves_it(
    temporal: Client, queue: str
) -> None:
    """Parked on a refused reversal, the saga is half undone: the next transfer on the account
    waits (it would read that half-done state) until the operator's decision ends the saga."""
    run = uuid.uuid4().hex[:6]
    account = f"acc-{run}"
    stuck = await start_saga(temporal, STUCK, transfer(f"{run}-stuck", account, f"frozen-{run}",
                             100), task_queue=queue)  # fmt: skip
    await until(lambda: _status(stuck, SagaStatus.NEEDS_ATTENTION))
    waiter = await start_saga(temporal, EXCLUSIVE, transfer(f"{run}-next", account, f"x-{run}",
                              100), task_queue=queue)  # fmt: skip
    await until(lambda: _status(waiter, SagaStatus.WAITING))
    await asyncio.sleep(2)  # parked for a while: still waiting, no step run
    waiting = await state(waiter)
    assert waiting.status is SagaStatus.WAITING and waiting.key_holder == stuck.id
    assert all(s.status.value == "pending" for s in waiting.steps)

    decision = Resolution(action="mark_compensated", step="debit", note="by hand")
    await stuck.execute_update("resolve", decision)
    assert (await asyncio.wait_for(outcome(stuck), 30)).status is SagaStatus.COMPENSATED
    assert (await asyncio.wait_for(outcome(waiter), 30)).status is SagaStatus.COMPLETED
    assert stuck.id in await _releases(temporal, f"account:{account}")


async def test_a_saga_waits_no_longer_than_its_exclusive_timeout(
    temporal: Client, queue: str
) -> None:
    run = uuid.uuid4().hex[:6]
    account = f"acc-{run}"
    holder = await start_saga(temporal, EXCLUSIVE, transfer(f"{run}-1", account, f"x-{run}", 100,
                              hold=8), task_queue=queue)  # fmt: skip
    await until(lambda: _step_running(holder, "hold"))
    impatient = await start_saga(temporal, IMPATIENT, transfer(f"{run}-2", account, f"y-{run}",
                                 100), task_queue=queue)  # fmt: skip
    with pytest.raises(WorkflowFailureError) as failed:
        await asyncio.wait_for(impatient.result(), 30)
    cause = failed.value.cause
    assert getattr(cause, "type", None) == EXCLUSIVE_TIMEOUT
    assert f"account:{account}" in str(cause) and holder.id in str(cause)
    after = await state(impatient)
    assert after.status is SagaStatus.FAILED
    assert all(s.status.value == "pending" for s in after.steps)  # nothing ran: nothing to undo
    assert entries(f"{IMPATIENT.name}-{run}-2:") == {}
    assert (await asyncio.wait_for(outcome(holder), 30)).status is SagaStatus.COMPLETED


async def test_a_child_saga_shares_the_keys_its_parent_holds(temporal: Client, queue: str) -> None:
    run = uuid.uuid4().hex[:6]
    handle = await start_saga(temporal, NESTED, transfer(f"{run}-n", f"acc-{run}", f"x-{run}", 100),
                              task_queue=queue)  # fmt: skip
    assert (await asyncio.wait_for(outcome(handle), 30)).status is SagaStatus.COMPLETED
    after = await start_saga(temporal, EXCLUSIVE, transfer(f"{run}-after", f"acc-{run}",
                             f"x-{run}", 100), task_queue=queue)  # fmt: skip
    assert (await asyncio.wait_for(outcome(after), 30)).status is SagaStatus.COMPLETED


@pytest.mark.parametrize(
    ("keys", "problem"),
    [
        (lambda t: [], "returned no key"),
        (lambda t: [""], "1 to 200 printable"),
        (lambda t: [42], "1 to 200 printable"),
        (lambda t: 1 / 0, "raised ZeroDivisionError"),
    ],
)
async def test_a_bad_key_function_fails_at_the_client_before_the_start(
    temporal: Client, keys: Any, problem: str
) -> None:
    import dataclasses

    saga = dataclasses.replace(EXCLUSIVE, exclusive=keys)
    tid = uuid.uuid4().hex[:6]
    with pytest.raises(SagaInputError) as bad:
        await start_saga(temporal, saga, transfer(tid, "a", "b", 1), task_queue="nowhere")
    assert bad.value.problems[0][0] == "exclusive" and problem in bad.value.problems[0][1]
    with pytest.raises(Exception):  # noqa: B017 (never started: no such run)
        await temporal.get_workflow_handle(f"{saga.name}-{tid}").describe()


async def test_a_burst_of_asks_on_one_shard_is_batched_never_refused(
    temporal: Client, queue: str
) -> None:
    # Temporal refuses a workflow more than 10 Updates in flight. 24 transfers on accounts of
    # one shard, started at once, ask it for 48 keys: the worker sends them one Update at a
    # time per shard, the asks that came meanwhile together, so none is refused and retried.
    run = uuid.uuid4().hex[:6]
    shard = zlib.crc32(f"account:{run}-0".encode()) % 16
    accounts = [a for a in (f"{run}-{i}" for i in range(2_000))
                if zlib.crc32(f"account:{a}".encode()) % 16 == shard][:48]  # fmt: skip
    handles = await asyncio.gather(*(
        start_saga(temporal, EXCLUSIVE, transfer(f"{run}-t{i}", accounts[2 * i],
                                                 accounts[2 * i + 1], 1), task_queue=queue)
        for i in range(24)))  # fmt: skip
    results = await asyncio.wait_for(asyncio.gather(*(outcome(h) for h in handles)), 120)
    assert {r.status for r in results} == {SagaStatus.COMPLETED}
    asks = updates = 0
    async for shard_run in temporal.list_workflows(f'WorkflowId = "sagaloom-keys:{shard:02d}"'):
        handle = temporal.get_workflow_handle(shard_run.id, run_id=shard_run.run_id)
        async for event in handle.fetch_history_events():
            if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED:
                update = event.workflow_execution_update_accepted_event_attributes.accepted_request
                data = json.loads(update.input.args.payloads[0].data)
                mine = [r for r in (data if isinstance(data, list) else [data])
                        if r["saga_id"].startswith(f"{EXCLUSIVE.name}-{run}-")]  # fmt: skip
                asks, updates = asks + len(mine), updates + bool(mine)
    assert asks == 48  # each key asked once (a local activity that timed out would ask again)
    assert updates < asks  # batched: one Update in flight per shard


async def _releases(temporal: Client, key: str) -> set[str]:
    """The sagas that signalled ``key``'s shard that they are done with it, in all its runs."""
    released: set[str] = set()
    shard = f"sagaloom-keys:{zlib.crc32(key.encode()) % 16:02d}"  # the protocol: 16 shards
    async for run in temporal.list_workflows(f'WorkflowId = "{shard}"'):
        handle = temporal.get_workflow_handle(run.id, run_id=run.run_id)
        async for event in handle.fetch_history_events():
            if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:
                signal = event.workflow_execution_signaled_event_attributes
                if signal.signal_name == "release-keys":
                    done = json.loads(signal.input.payloads[0].data)
                    if key in done["keys"]:
                        released.add(done["saga_id"])
    return released


async def _debited(prefix: str) -> bool:
    try:
        return bool(entries(prefix))
    except sqlite3.OperationalError:  # no entry yet: the ledger has no table
        return False


async def _status(handle: WorkflowHandle[Any, Any], status: SagaStatus) -> bool:
    try:
        return (await state(handle)).status is status
    except Exception:
        return False


async def _step_running(handle: WorkflowHandle[Any, Any], step: str) -> bool:
    try:
        found = next(s for s in (await state(handle)).steps if s.name == step)
    except Exception:
        return False
    return found.status.value == "running"


async def _window(handle: WorkflowHandle[Any, Any]) -> tuple[datetime, datetime]:
    """From the history: when the saga's first step was scheduled, and when its last step or
    compensation ended (its keys are released after that)."""
    first = last = None
    ended = (
        EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED,
        EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED,
    )
    async for event in handle.fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            kind = event.activity_task_scheduled_event_attributes.activity_type.name
            if first is None and kind.startswith("ledger."):
                first = event.event_time.ToDatetime()
        elif event.event_type in ended:
            last = event.event_time.ToDatetime()
    assert first is not None and last is not None
    return first, last


async def test_a_saga_that_waits_for_a_key_says_so_in_its_lifecycle_events(
    temporal: Client, nats_server: NatsServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LEDGER_DB", str(tmp_path / "ledger.sqlite3"))
    plugin = SagaloomPlugin(services={}, breakers=Breakers(None), nats_url=nats_server.url)
    run, first, second = await _one_waits_behind_another(temporal, plugin, EVENTFUL)
    events = await saga_events(nats_server.url, second.id)
    assert [e.type for e in events][:2] == ["io.sagaloom.saga.started", "io.sagaloom.saga.waiting"]
    assert events[1].data["exclusive_key"] == f"account:acc-{run}"
    assert events[1].data["holder"] == first.id
    assert events[-1].type == "io.sagaloom.saga.completed"


async def test_a_wait_for_a_key_is_counted_by_key_family(
    dev_server: DevServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker's metrics count the sagas that waited, and how long, by key family."""
    monkeypatch.setenv("LEDGER_DB", str(tmp_path / "ledger.sqlite3"))
    metrics = f"127.0.0.1:{free_port()}"
    runtime = Runtime(telemetry=TelemetryConfig(metrics=PrometheusConfig(bind_address=metrics)))
    client = await connect(dev_server.address, runtime=runtime)
    plugin = SagaloomPlugin(services={}, breakers=Breakers(None))
    await _one_waits_behind_another(client, plugin, EXCLUSIVE)
    async with httpx.AsyncClient() as http:
        text = (await http.get(f"http://{metrics}/metrics")).text
    waits = [line for line in text.splitlines() if line.startswith("sagaloom_key_waits{")]
    assert any('family="account"' in line and line.endswith(" 1") for line in waits), waits
    waited = [line for line in text.splitlines()
              if line.startswith("sagaloom_key_wait_duration_count{")]  # fmt: skip
    assert any('family="account"' in line and line.endswith(" 1") for line in waited), waited


async def _one_waits_behind_another(
    client: Client, plugin: SagaloomPlugin, second_saga: Any
) -> tuple[str, WorkflowHandle[Any, Any], WorkflowHandle[Any, Any]]:
    """On a worker with ``plugin``: a transfer holds an account 2 s, a second one
    (``second_saga``) waits for it; both complete. (The run's id, the holder, the waiter.)"""
    queue = f"exclusive-waits-{uuid.uuid4().hex[:6]}"
    run = uuid.uuid4().hex[:6]
    async with Worker(client, task_queue=queue, workflows=SAGAS, activities=ACTIVITIES,
                      plugins=[plugin]):  # fmt: skip
        first = await start_saga(client, EXCLUSIVE, transfer(f"{run}-1", f"acc-{run}",
                                 f"x-{run}", 100, hold=2), task_queue=queue)  # fmt: skip
        await until(lambda: _step_running(first, "hold"))
        second = await start_saga(client, second_saga, transfer(f"{run}-2", f"acc-{run}",
                                  f"y-{run}", 100), task_queue=queue)  # fmt: skip
        results = [await asyncio.wait_for(outcome(h), 30) for h in (first, second)]
    assert [r.status for r in results] == [SagaStatus.COMPLETED] * 2
    return run, first, second


async def test_holders_and_waiters_come_through_server_sigkills_one_at_a_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Aimed at the key shards: while one transfer holds an account and four wait for it, the
    Temporal server's whole process group is SIGKILLed and restarted on its SQLite file, twice
    (holding, then as the keys pass on). Every saga completes, in turn, never two at once."""
    monkeypatch.setenv("LEDGER_DB", str(tmp_path / "ledger.sqlite3"))
    server = DevServer(DevServerOptions.in_folder(tmp_path, ui=False))
    await server.start()
    try:
        client = await connect(server.address)
        queue = f"exclusive-kill-{uuid.uuid4().hex[:6]}"
        plugin = SagaloomPlugin(services={}, breakers=Breakers(None))
        async with Worker(
            client, task_queue=queue, workflows=SAGAS, activities=ACTIVITIES, plugins=[plugin]
        ):
            run = uuid.uuid4().hex[:6]
            plans = [transfer(f"{run}-{i}", f"acc-{run}", f"to-{run}-{i}", 1_000, hold=1.5)
                     for i in range(5)]  # fmt: skip
            handles = [await start_saga(client, EXCLUSIVE, p, task_queue=queue) for p in plans]
            await until(lambda: _status(handles[-1], SagaStatus.WAITING), within=30)
            for pause in (0.0, 2.0):  # while the first holds; then as the keys pass on
                await asyncio.sleep(pause)
                await _kill_and_restart(server)
            await asyncio.gather(*(asyncio.wait_for(outcome(h), 180) for h in handles))
            results = [await outcome(h) for h in handles]
            assert [r.status for r in results] == [SagaStatus.COMPLETED] * 5
            windows = sorted([await _window(h) for h in handles])
            for (_, end), (start, _) in itertools.pairwise(windows):
                assert end <= start, "two transfers held the account at once"
            assert entries(f"{EXCLUSIVE.name}-{run}-")[f"acc-{run}"] == -5_000
    finally:
        server.stop()


async def _kill_and_restart(server: DevServer) -> None:
    """SIGKILL the dev server's whole process group, then start it again on its SQLite file."""
    process = server._process  # (the chaos harness does the same)
    assert process is not None
    os.killpg(process.pid, signal.SIGKILL)
    await asyncio.to_thread(process.wait)
    server._process = None
    await server.start()


async def test_a_saga_whose_keys_are_free_finds_them_taken_when_it_starts(
    temporal: Client, queue: str
) -> None:
    """start_saga takes the free keys before the start and lists them in the saga's memo: the
    saga holds them without asking (no ask in its history), and releases them at its end."""
    run = uuid.uuid4().hex[:6]
    keys = [f"account:acc-{run}", f"account:x-{run}"]
    handle = await start_saga(temporal, EXCLUSIVE, transfer(f"{run}-1", f"acc-{run}", f"x-{run}",
                              100), task_queue=queue)  # fmt: skip
    memo = await (await handle.describe()).memo_value("sagaloom-keys")
    assert memo["keys"] == keys
    assert (await asyncio.wait_for(outcome(handle), 30)).status is SagaStatus.COMPLETED
    assert await _local_activities(handle) == ["sagaloom.key.release"]
    assert handle.id in await _releases(temporal, keys[0])


async def test_a_saga_with_many_keys_finds_twenty_taken_and_asks_for_the_rest(
    temporal: Client, queue: str
) -> None:
    """The memo stays small: start_saga takes 20 keys at most; the saga asks for the others,
    in order, and holds all 25 (a transfer on the last one waits for it)."""
    run = uuid.uuid4().hex[:6]
    handle = await start_saga(temporal, WIDE, transfer(f"{run}-1", f"acc-{run}", f"x-{run}", 100,
                              hold=2), task_queue=queue)  # fmt: skip
    keys = WIDE.exclusive_keys(WIDE.parse_input(transfer(f"{run}-1", f"acc-{run}", "x", 1)))
    memo = await (await handle.describe()).memo_value("sagaloom-keys")
    assert memo["keys"] == keys[:20]
    await until(lambda: _step_running(handle, "hold"))
    assert keys[-1] == f"account:acc-{run}-23"  # asked for by the saga itself
    waiter = await start_saga(temporal, EXCLUSIVE, transfer(f"{run}-2", f"acc-{run}-23",
                              f"y-{run}", 100), task_queue=queue)  # fmt: skip
    await until(lambda: _status(waiter, SagaStatus.WAITING))
    assert (await asyncio.wait_for(outcome(handle), 30)).status is SagaStatus.COMPLETED
    assert (await asyncio.wait_for(outcome(waiter), 30)).status is SagaStatus.COMPLETED
    asks = [kind for kind in await _local_activities(handle) if kind == "sagaloom.key.ask"]
    assert len(asks) == 5


async def test_a_start_that_did_not_happen_gives_its_early_keys_back(
    temporal: Client, queue: str
) -> None:
    """A second start of a completed transfer is refused (REJECT_DUPLICATE): the keys taken for
    it before the start are free again at once — the next transfer takes them early too."""
    run = uuid.uuid4().hex[:6]
    plan = transfer(f"{run}-1", f"acc-{run}", f"x-{run}", 100)
    done = await start_saga(temporal, EXCLUSIVE, plan, task_queue=queue)
    assert (await asyncio.wait_for(outcome(done), 30)).status is SagaStatus.COMPLETED
    with pytest.raises(WorkflowAlreadyStartedError):
        await start_saga(temporal, EXCLUSIVE, plan, task_queue=queue,
                         id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE)  # fmt: skip
    after = await start_saga(temporal, EXCLUSIVE, transfer(f"{run}-2", f"acc-{run}", f"x-{run}",
                             100), task_queue=queue)  # fmt: skip
    assert (await (await after.describe()).memo_value("sagaloom-keys"))["keys"] == [
        f"account:acc-{run}", f"account:x-{run}"]  # fmt: skip
    assert (await asyncio.wait_for(outcome(after), 30)).status is SagaStatus.COMPLETED


async def test_a_key_taken_for_a_saga_that_never_started_is_freed(
    temporal: Client, queue: str
) -> None:
    """A client took a key for a saga, then died before starting it: the next saga on the key
    waits behind the missing holder, which the shard looks for once the start's grace is over."""
    run = uuid.uuid4().hex[:6]
    taken = await desk_of(temporal).take_early([f"account:acc-{run}"], f"ghost-{run}")
    assert taken is not None and taken.keys == [f"account:acc-{run}"]
    waiter = await start_saga(temporal, EXCLUSIVE, transfer(f"{run}-1", f"acc-{run}", f"x-{run}",
                              100), task_queue=queue)  # fmt: skip
    await until(lambda: _status(waiter, SagaStatus.WAITING))
    assert (await state(waiter)).key_holder == f"ghost-{run}"
    assert (await asyncio.wait_for(outcome(waiter), 40)).status is SagaStatus.COMPLETED


async def test_a_saga_started_long_after_its_keys_were_taken_asks_for_them(
    temporal: Client, queue: str
) -> None:
    """A memo that lists keys taken too long ago (a replayed start, a forged one) is not
    trusted: the saga asks, and waits behind the transfer holding the account."""
    run = uuid.uuid4().hex[:6]
    holder = await start_saga(temporal, EXCLUSIVE, transfer(f"{run}-1", f"acc-{run}", f"x-{run}",
                              100, hold=3), task_queue=queue)  # fmt: skip
    await until(lambda: _step_running(holder, "hold"))
    stale = EarlyKeys(keys=[f"account:acc-{run}", f"account:y-{run}"],
                      since=datetime.now(UTC) - timedelta(minutes=5))  # fmt: skip
    late = await temporal.start_workflow(
        EXCLUSIVE.name, transfer(f"{run}-2", f"acc-{run}", f"y-{run}", 100),
        id=f"{EXCLUSIVE.name}-{run}-2", task_queue=queue, memo={"sagaloom-keys": stale},
    )  # fmt: skip
    await until(lambda: _status(late, SagaStatus.WAITING))
    assert (await state(late)).key_holder == holder.id
    for handle in (holder, late):
        assert (await asyncio.wait_for(outcome(handle), 30)).status is SagaStatus.COMPLETED
    assert "sagaloom.key.ask" in await _local_activities(late)
    first, second = await _window(holder), await _window(late)
    assert first[1] <= second[0]


async def _local_activities(handle: WorkflowHandle[Any, Any]) -> list[str]:
    """The local activities in ``handle``'s history, in order, by activity type."""
    kinds = []
    async for event in handle.fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_MARKER_RECORDED:
            details = event.marker_recorded_event_attributes.details
            if "data" in details:
                kinds.append(json.loads(details["data"].payloads[0].data)["activity_type"])
    return kinds
