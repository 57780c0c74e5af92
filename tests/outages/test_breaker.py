"""Outages: a step waits while its service is down, instead of spending retries and compensating.

Real dev server, an in-process worker, and participants on loopback that go down for real (503s,
refused connections). Each saga calls a service of its own, so each test has its own breaker.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import time
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
import pytest_asyncio
from temporalio.client import Client, WorkflowHandle
from temporalio.service import RPCError
from temporalio.worker import Replayer, Worker

from sagaloom import Saga, SagaState, SagaStatus, StepStatus
from sagaloom.client import connect, outcome, start_saga
from sagaloom.participants import Breakers, BreakerSettings
from sagaloom.worker import SagaloomPlugin, ServiceLimit
from tests._helpers import ROOT, cli, wait_for_status, wait_for_step
from tests._outage_sagas import (
    BUDGET,
    FLAKY,
    HAND_HELD,
    HELD,
    HOLD_ME,
    LIMITED_DOWN,
    OPT_OUT,
    OUTAGE,
    PICKY,
    REFUSING,
    SAGAS,
    UNDO_OPEN,
    LimitedDownSaga,
)
from tests._outage_service import FlakyService, flaky_services

pytestmark = pytest.mark.integration
SETTINGS = BreakerSettings(
    threshold=2,
    window=timedelta(seconds=30),
    probe_every=timedelta(seconds=1),
    release_per_second=0.5,  # one step every 2 s: well apart from how fast sagas go on
    outage_budget=timedelta(hours=1),
)
SERVICES = (
    "outage",
    "refusing",
    "budget",
    "optout",
    "held",
    "handheld",
    "holdme",
    "picky",
    "flaky",
    "undoopen",
    "undoship",
)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def services() -> AsyncIterator[dict[str, FlakyService]]:
    async with flaky_services(SERVICES) as running:
        yield running


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def queue(temporal: Client, services: dict[str, FlakyService]) -> AsyncIterator[str]:
    name = f"breaker-{uuid.uuid4().hex[:6]}"
    breakers = Breakers(SETTINGS, {"budget": timedelta(seconds=3)})
    plugin = SagaloomPlugin(services={n: s.url for n, s in services.items()}, breakers=breakers)
    async with Worker(temporal, task_queue=name, workflows=SAGAS, plugins=[plugin]):
        yield name


async def start(
    temporal: Client, saga: Saga[Any], queue: str, n: int
) -> list[WorkflowHandle[Any, Any]]:
    run = uuid.uuid4().hex[:6]
    return [
        await start_saga(temporal, saga, {"order_id": f"{run}-{i}"}, task_queue=queue)
        for i in range(n)
    ]


async def all_waiting(handles: list[WorkflowHandle[Any, Any]], within: float = 20) -> None:
    deadline = time.monotonic() + within
    while True:
        states = [await h.query("saga_state", result_type=SagaState) for h in handles]
        if all(s.status is SagaStatus.WAITING for s in states):
            for state in states:
                assert state.steps[0].status is StepStatus.WAITING
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"not all waiting: {[s.status for s in states]}")
        await asyncio.sleep(0.2)


async def test_a_long_outage_compensates_nothing_and_the_service_is_not_stampeded(
    temporal: Client, queue: str, services: dict[str, FlakyService]
) -> None:
    service = services["outage"]
    service.mode = "503"
    handles = await start(temporal, OUTAGE, queue, 5)
    await all_waiting(handles)
    held_from = time.monotonic()
    await asyncio.sleep(8)  # far past the retry window (4 attempts, 0.6 s): nobody compensates
    held = time.monotonic() - held_from
    assert service.posts(since=held_from) == []  # waiting steps spend no attempts
    probes = len(service.probes(since=held_from))
    assert 1 <= probes <= held / SETTINGS.probe_every.total_seconds() + 2  # one probe a second
    outage_calls = len(service.posts())
    assert outage_calls <= SETTINGS.threshold + len(handles) + 2  # not attempts x sagas (20)
    service.mode = "up"
    back = time.monotonic()
    results = [await outcome(h) for h in handles]
    assert [r.status for r in results] == [SagaStatus.COMPLETED] * 5
    assert sorted(service.charged.values()) == [1] * 5 and not service.refunded
    first = sorted(c.at for c in service.posts(since=back) if c.status == 200)
    gaps = [b - a for a, b in itertools.pairwise(first)]
    assert len(first) == 5 and min(gaps) >= 0.8 / SETTINGS.release_per_second  # the set rate
    # the new code path replays: a saga that waited, and its service's breaker
    breaker = temporal.get_workflow_handle(f"sagaloom-breaker:{queue}:outage")
    histories = [await handles[0].fetch_history(), await breaker.fetch_history()]
    replayer = Replayer(workflows=SAGAS, plugins=[SagaloomPlugin(services={})])  # + the breaker
    for history in histories:
        await replayer.replay_workflow(history)
    if os.environ.get("SAGALOOM_RECORD_HISTORIES"):  # tests/release/test_replay.py replays these
        folder, ids = ROOT / "tests" / "histories", {}
        names = ("breaker-waited", "breaker-service")
        for name, history in zip(names, histories, strict=True):
            (folder / f"{name}.json").write_text(history.to_json())
            ids[name] = history.workflow_id
        (folder / "breaker-ids.json").write_text(json.dumps(ids, indent=2) + "\n")


async def test_refused_connections_open_the_breaker_too(
    temporal: Client, queue: str, services: dict[str, FlakyService]
) -> None:
    service = services["refusing"]
    await service.stop()
    handles = await start(temporal, REFUSING, queue, 3)
    await all_waiting(handles)
    await asyncio.sleep(3)
    await service.start()
    results = [await outcome(h) for h in handles]
    assert [r.status for r in results] == [SagaStatus.COMPLETED] * 3
    assert sorted(service.charged.values()) == [1] * 3


async def test_past_its_outage_budget_a_waiting_saga_compensates(
    temporal: Client, queue: str, services: dict[str, FlakyService]
) -> None:
    service = services["budget"]
    service.mode = "503"
    began = time.monotonic()
    handles = await start(temporal, BUDGET, queue, 2)
    await all_waiting(handles)
    for handle in handles:  # the service's own budget (3 s), not the default hour
        await wait_for_status(handle, SagaStatus.COMPENSATING, within=20)
    assert time.monotonic() - began < 20
    service.mode = "up"  # the refunds (never held by a breaker) go through
    results = [await outcome(h) for h in handles]
    assert [r.status for r in results] == [SagaStatus.COMPENSATED] * 2
    assert all("OutageBudgetSpent" in (r.error or "") for r in results), results


async def test_a_step_that_opts_out_retries_and_compensates_as_before(
    temporal: Client, queue: str, services: dict[str, FlakyService]
) -> None:
    service = services["optout"]
    service.mode = "503"
    (handle,) = await start(temporal, OPT_OUT, queue, 1)
    await wait_for_status(handle, SagaStatus.COMPENSATING, within=20)  # 4 quick attempts, no wait
    assert len(service.posts()) == 4
    service.mode = "up"  # for the refund
    result = await outcome(handle)
    assert result.status is SagaStatus.COMPENSATED and "ParticipantUnavailable" in (
        result.error or ""
    )
    with pytest.raises(RPCError):  # it never asked, nor told, a breaker
        await temporal.get_workflow_handle(f"sagaloom-breaker:{queue}:optout").describe()


async def saga_cli(*args: str, address: str, env: dict[str, str]) -> Any:
    """The CLI in a thread: the in-process worker must go on meanwhile."""
    return await asyncio.to_thread(cli, *args, address=address, env=env)


async def test_an_operator_holds_and_releases_a_service_from_the_cli(
    temporal: Client, queue: str, services: dict[str, FlakyService], dev_server: Any
) -> None:
    address = dev_server.address
    env = {"SAGALOOM_SERVICE_HELD": services["held"].url}
    opened = await saga_cli("services", "--open", "held", "--note", "PSP maintenance",
                      "--task-queue", queue, address=address, env=env)  # fmt: skip
    assert opened.returncode == 0, opened.stderr
    (handle,) = await start(temporal, HELD, queue, 1)
    await all_waiting([handle])
    listed = await saga_cli(
        "services", "--module", "workflows.fulfilment", address=address, env=env
    )
    row = next(line for line in listed.stdout.splitlines() if line.startswith("held"))
    assert "open (forced open)" in row and row.split()[4] == "1", listed.stdout  # 1 waiting
    # a Command service of the saga modules is known too (the fulfilment saga's warehouse)
    assert any(line.startswith("warehouse ") for line in listed.stdout.splitlines())
    assert services["held"].posts() == []  # held: not called
    closed = await saga_cli("services", "--close", "held", address=address, env=env)
    assert closed.returncode == 0, closed.stderr
    assert (await outcome(handle)).status is SagaStatus.COMPLETED
    unknown = await saga_cli("services", "--open", "nosuch", address=address, env=env)
    assert unknown.returncode == 2 and "unknown service 'nosuch'" in unknown.stderr
    assert "Traceback" not in unknown.stderr


async def test_a_breaker_opened_by_hand_holds_through_its_probes_until_auto(
    temporal: Client, queue: str, services: dict[str, FlakyService], dev_server: Any
) -> None:
    """operating.md: opened by hand, it "holds its steps" until --auto — the service answering
    (a probe that would succeed) does not close it."""
    address = dev_server.address
    env = {"SAGALOOM_SERVICE_HANDHELD": services["handheld"].url}
    opened = await saga_cli("services", "--open", "handheld", "--task-queue", queue,
                            address=address, env=env)  # fmt: skip
    assert opened.returncode == 0, opened.stderr
    (handle,) = await start(temporal, HAND_HELD, queue, 1)
    await all_waiting([handle])
    probe_every = SETTINGS.probe_every.total_seconds()
    await asyncio.sleep(4 * probe_every)  # across four probe times: the service is up all along
    listed = await saga_cli("services", "--json", address=address, env=env)
    view = next(v for v in json.loads(listed.stdout) if v["service"] == "handheld")
    assert view["status"] == "open" and view["forced"] == "open"
    assert view["probes"] == 0  # held by hand: never probed, never closed by a probe
    assert services["handheld"].posts() == []
    state = await handle.query("saga_state", result_type=SagaState)
    assert state.status is SagaStatus.WAITING

    auto = await saga_cli("services", "--auto", "handheld", "--task-queue", queue,
                          address=address, env=env)  # fmt: skip
    assert auto.returncode == 0, auto.stderr
    async with asyncio.timeout(30):  # back to the rules: the next probe finds it up
        assert (await outcome(handle)).status is SagaStatus.COMPLETED
    assert len(services["handheld"].posts()) == 1


async def test_refusals_and_faults_never_open_the_breaker(
    temporal: Client, queue: str, services: dict[str, FlakyService]
) -> None:
    """A 4xx is the participant's answer and a 500 its bug: neither is an outage."""
    service = services["picky"]
    for mode in ("422", "500"):  # a refusal is not retried; a 500 is, 4 times
        service.mode = mode
        handles = await start(temporal, PICKY, queue, 3)
        results = [await asyncio.wait_for(outcome(h), 30) for h in handles]
        assert [r.status for r in results] == [SagaStatus.COMPENSATED] * 3, mode
    assert len(service.posts()) == 3 * 1 + 3 * 4
    with pytest.raises(RPCError):  # no breaker was ever started for it
        await temporal.get_workflow_handle(f"sagaloom-breaker:{queue}:picky").describe()
    service.mode = "up"


async def test_saga_services_lists_the_others_when_one_breaker_has_no_worker(
    temporal: Client, queue: str, dev_server: Any
) -> None:
    """A breaker whose task queue no worker polls (a test's, an old app's) cannot answer its
    query: it shows as unknown, and the others are listed (was: the command failed)."""
    ghost = uuid.uuid4().hex[:6]
    handle = await temporal.start_workflow(
        "SagaloomServiceBreaker",
        {"service": ghost, "settings": {}},
        id=f"sagaloom-breaker:{ghost}",
        task_queue=f"nobody-{ghost}",
    )
    try:
        listed = await saga_cli("services", address=dev_server.address, env={})
        assert listed.returncode == 0, listed.stderr
        row = next(line for line in listed.stdout.splitlines() if line.startswith(ghost))
        assert "unknown" in row and f"is a worker polling nobody-{ghost}?" in row
        as_json = await saga_cli("services", "--json", address=dev_server.address, env={})
        assert {"service": ghost, "status": "unknown"}.items() <= next(
            v for v in json.loads(as_json.stdout) if v["service"] == ghost
        ).items()
    finally:
        await handle.terminate()


async def test_a_few_503s_among_answers_do_not_open_the_breaker(
    temporal: Client, queue: str, services: dict[str, FlakyService]
) -> None:
    """Every 4th call answered 503: retried, not an outage (the threshold here is 2)."""
    service = services["flaky"]
    service.mode = "flaky"
    handles = await start(temporal, FLAKY, queue, 12)
    results = await asyncio.gather(*(outcome(h) for h in handles))
    assert [r.status for r in results] == [SagaStatus.COMPLETED] * 12
    assert sum(1 for c in service.posts() if c.status == 503) >= SETTINGS.threshold
    try:
        view = await temporal.get_workflow_handle(f"sagaloom-breaker:{queue}:flaky").query(
            "breaker"
        )
        assert view["opened_at"] is None, view  # it counted some, never opened
    except RPCError:
        pass  # no breaker was ever told: fine too


async def test_a_limited_service_has_one_breaker_shared_with_its_sagas(
    temporal: Client, dev_server: Any
) -> None:
    """operating.md: one breaker per service, shared by every worker of the app — also for a
    service with limits, whose calls run on a task queue of their own."""
    name = f"limited-{uuid.uuid4().hex[:6]}"
    async with flaky_services(["limdown"]) as running:
        service = running["limdown"]
        service.mode = "503"
        plugin = SagaloomPlugin(
            services={"limdown": service.url},
            breakers=Breakers(SETTINGS),
            limits={"limdown": ServiceLimit(calls_per_second=50)},
        )
        clients = [temporal, await connect(dev_server.address)]  # (one worker per client)
        workers = [  # two workers of the app, both with the limit
            Worker(each, task_queue=name, workflows=[LimitedDownSaga], plugins=[plugin])
            for each in clients
        ]
        async with workers[0], workers[1]:
            handles = await start(temporal, LIMITED_DOWN, name, 3)
            await all_waiting(handles)  # they wait on the breaker the calls opened
            listed = await saga_cli("services", "--json", address=dev_server.address, env={})
            mine = [v for v in json.loads(listed.stdout) if v["service"] == "limdown"]
            assert len(mine) == 1 and mine[0]["status"] == "open", mine
            assert len(mine[0]["waiting"]) == 3
            found = [
                e.id
                async for e in temporal.list_workflows(
                    'WorkflowType = "SagaloomServiceBreaker" AND ExecutionStatus = "Running"'
                )
                if e.id.endswith(":limdown")
            ]
            assert found == [f"sagaloom-breaker:{name}:limdown"]  # the sagas' queue, not @
            service.mode = "up"
            results = [await asyncio.wait_for(outcome(h), 60) for h in handles]
        assert [r.status for r in results] == [SagaStatus.COMPLETED] * 3
        assert sorted(service.charged.values()) == [1, 1, 1]


async def test_an_operator_holds_a_step_and_releases_its_sagas_at_the_release_rate(
    temporal: Client, queue: str, services: dict[str, FlakyService], dev_server: Any
) -> None:
    """operating.md, Incidents: ``saga hold --step`` makes sagas that reach the step wait there
    without calling it, whatever the service does; ``saga release`` lets them go at the rate."""
    address, env = dev_server.address, {"SAGALOOM_SAGA_MODULES": "tests._outage_sagas"}
    hold = await saga_cli("hold", "--step", "charge", "--saga", "HoldMeSaga", "--task-queue",
                          queue, "--note", "PSP bug", address=address, env=env)  # fmt: skip
    assert hold.returncode == 0, hold.stderr
    handles = await start(temporal, HOLD_ME, queue, 3)
    await all_waiting(handles)
    await asyncio.sleep(2 * SETTINGS.probe_every.total_seconds())  # the service is up all along
    assert services["holdme"].posts() == []  # held before the step: never called
    states = [await h.query("saga_state", result_type=SagaState) for h in handles]
    assert {s.steps[0].waiting_for for s in states} == {"hold.HoldMeSaga.charge"}
    shown = await saga_cli("show", handles[0].id, address=address, env=env)
    assert "held before it by an operator" in shown.stdout
    history = await handles[0].fetch_history()
    assert len(history.events) < 30  # it waits on the hold: no loop of attempts

    released = await saga_cli("release", "--step", "charge", "--saga", "HoldMeSaga",
                              "--task-queue", queue, "--rate", "0.5",
                              address=address, env=env)  # fmt: skip
    assert released.returncode == 0, released.stderr
    results = [await asyncio.wait_for(outcome(h), 60) for h in handles]
    assert [r.status for r in results] == [SagaStatus.COMPLETED] * 3
    calls = sorted(c.at for c in services["holdme"].posts())
    assert len(calls) == 3  # each once
    gap = 1 / 0.5  # released one at a time, at the rate given
    assert all(b - a >= gap * 0.8 for a, b in itertools.pairwise(calls)), calls

    for bad, said in ((["--step", "nosuch", "--saga", "HoldMeSaga"], "has no step 'nosuch'"),
                      (["--step", "charge", "--saga", "NoSaga"], "no saga 'NoSaga'")):  # fmt: skip
        refused = await saga_cli("hold", *bad, "--task-queue", queue, address=address, env=env)
        assert refused.returncode == 2 and said in refused.stderr, refused.stderr


async def test_a_compensation_never_waits_for_an_open_breaker(
    temporal: Client, queue: str, services: dict[str, FlakyService], dev_server: Any
) -> None:
    """operating.md: "Compensations never wait for a breaker: they retry within their own
    budget" — a refund to a service whose breaker an operator opened goes out at once."""
    address, charged, ship = dev_server.address, services["undoopen"], services["undoship"]
    env = {"SAGALOOM_SERVICE_UNDOOPEN": charged.url}
    ship.mode, ship.delay = "422", 3.0  # the shipment refuses, after the breaker is open
    (handle,) = await start(temporal, UNDO_OPEN, queue, 1)
    order_id = (await handle.query("saga_state", result_type=SagaState)).key
    try:
        await wait_for_step(handle, "charge", StepStatus.DONE)
        assert charged.charged == {order_id: 1}
        opened = await saga_cli("services", "--open", "undoopen", "--task-queue", queue,
                                address=address, env=env)  # fmt: skip
        assert opened.returncode == 0, opened.stderr
        async with asyncio.timeout(20):  # the refund does not wait for --auto
            result = await outcome(handle)
        assert result.status is SagaStatus.COMPENSATED, result
        assert charged.refunded == {order_id}
        listed = await saga_cli("services", "--json", address=address, env=env)
        view = next(v for v in json.loads(listed.stdout) if v["service"] == "undoopen")
        assert view["forced"] == "open"  # it was open all along
    finally:
        auto = await saga_cli("services", "--auto", "undoopen", "--task-queue", queue,
                              address=address, env=env)  # fmt: skip
        assert auto.returncode == 0, auto.stderr
