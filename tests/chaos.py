"""The chaos harness: many sagas while workers, the Temporal server and the participants are
SIGKILLed and restarted and participants misbehave; then the participants' own stores are checked.

``tests/ops/test_chaos.py`` runs it in CI with about 100 sagas; run it by hand for a longer report:
``python -m tests.chaos --sagas 600 --report docs/chaos.md`` (exits 1 on any violation or
unexpected outcome).

The mix: the order saga on regular activities, on the fast path (local activities) and in a
parallel shape; the trip saga (an asynchronous hotel replying through the workers' endpoints, a
durable timer); some sagas cancelled while they run. Faults at the participants (seeded, per
call): 5xx, a response slower than the step's timeout, "commit, then drop the connection".
Harness faults: SIGKILL a random worker process every few seconds (a new one starts on the same
endpoint); SIGKILL the Temporal dev server's whole process group several times and restart it on
the same SQLite file; SIGKILL the participants and restart them on their stores and ports; and,
with ``--outage-seconds``, one long outage of one participant (503 to everything, its probe
included, for longer than a step's retries last): with the breakers on (the default), the sagas
that reach it wait and complete; ``--no-breaker`` shows what happens without them.

Invariants, from the participants' stores once everything settles: every saga is fully done,
fully compensated or cancelled (nothing active), or parked with its compensated steps undone; no
effect is applied twice; every call a participant received for a step carried that step's own
idempotency key (``<workflow id>:<step>``, ``…:compensate`` for the undo); no saga is lost.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from temporalio.api.enums.v1 import EventType, TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client, WorkflowHandle
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError

from sagaloom import Saga, SagaState, SagaStatus
from sagaloom._saga._outage import RELEASED_SIGNAL
from sagaloom.client import Outcome, connect, outcome, start_saga
from sagaloom.server import DevServer, DevServerOptions, free_port
from services import CATALOG
from tests._chaos_sagas import (
    CHAOS_EXCLUSIVE_ORDER,
    CHAOS_FAST_ORDER,
    CHAOS_ITINERARY,
    CHAOS_NESTED,
    CHAOS_ORDER,
    CHAOS_PARALLEL_ORDER,
    CHAOS_TRIP,
)

ROOT = Path(__file__).resolve().parent.parent
QUEUE = "chaos"
WORKERS = 2
REPLY_SECRET = "chaos-reply-secret"
PARTICIPANT_FAULTS = [
    {"op": "do", "match": "*", "mode": "error", "status": 503, "rate": 0.10},
    {"op": "do", "match": "*", "mode": "slow", "delay": 3.0, "rate": 0.03},
    {"op": "do", "match": "*", "mode": "drop", "rate": 0.05},
    {"op": "undo", "match": "*", "mode": "error", "status": 502, "rate": 0.10},
    {"op": "undo", "match": "*", "mode": "drop", "rate": 0.05},
]


@dataclass(frozen=True)
class Plan:
    """One saga of the run: which, with what input, what it must end as."""

    saga: Saga[Any]
    data: dict[str, Any]
    want: SagaStatus
    failed_step: str | None
    cancel_after: float | None = None

    @property
    def key(self) -> str:
        return str(
            self.data.get("order_id") or self.data.get("trip_id") or self.data["itinerary_id"]
        )


LEGS = ("Lisbon", "Venice", "Berlin")
"""The chaos itineraries' legs."""


def plan(i: int, batch: str) -> Plan:
    """The i-th saga: a mix of shapes, a share failing at a chosen step, a share cancelled."""
    key = f"{batch}-{i}"
    kind = i % 10
    if kind >= 8:  # trips (the async hotel, the timer), alone or as a parent's child step
        nested = kind == 9
        # a share of the nested ones cancelled, some while their child saga starts
        cancel = nested and i % 20 == 9
        venice = i % 20 in (8, 19) and not cancel  # a cancelled one must not also fail
        data = {"trip_id": key, "traveller": "chaos", "nights": 2, "cooling_off_seconds": 1,
                "destination": "Venice" if venice else "Lisbon"}  # fmt: skip
        saga = CHAOS_NESTED if nested else CHAOS_TRIP
        if cancel:
            # cancels from the child's start to around its "steps done" (the race that hung)
            at = (0.2, 1.0, 2.0, 2.6, 3.2, 4.0)[(i // 20) % 6]
            return Plan(saga, data, SagaStatus.CANCELED, None, cancel_after=at)
        return Plan(
            saga,
            data,
            SagaStatus.COMPENSATED if venice else SagaStatus.COMPLETED,
            ("trip" if nested else "book-car") if venice else None,
        )
    if i % 20 == 17:  # a fan-out over three legs (Venice has no car: tolerated); some declined
        declined = i % 40 == 37
        legs = [{"leg_id": f"leg{n}", "destination": city} for n, city in enumerate(LEGS)]
        data = {"itinerary_id": key, "traveller": "chaos", "legs": legs,
                "amount_cents": 500_000 if declined else 1_000}  # fmt: skip
        if declined:
            return Plan(CHAOS_ITINERARY, data, SagaStatus.COMPENSATED, "charge")
        return Plan(CHAOS_ITINERARY, data, SagaStatus.COMPLETED, None)
    saga = CHAOS_ORDER if kind < 4 else CHAOS_FAST_ORDER if kind < 6 else CHAOS_PARALLEL_ORDER
    customer = "chaos"
    if kind == 2:  # one at a time per customer: 4 customers share them (exclusive keys)
        saga, customer = CHAOS_EXCLUSIVE_ORDER, f"chaos-{batch}-{i % 4}"
    data = {"order_id": key, "customer": customer, "sku": "widget", "quantity": 1,
            "amount_cents": 1_000, "country": "NL"}  # fmt: skip
    if i % 15 in (4, 7):  # (4: the fast path, 7: the parallel saga)
        return Plan(saga, data, SagaStatus.CANCELED, None, cancel_after=0.5)
    if i % 5 == 1:
        return Plan(
            saga, {**data, "amount_cents": 500_000}, SagaStatus.COMPENSATED, "charge-payment"
        )
    if i % 10 == 3:
        return Plan(saga, {**data, "country": "AQ"}, SagaStatus.COMPENSATED, "create-shipment")
    return Plan(saga, data, SagaStatus.COMPLETED, None)


@dataclass
class ChaosReport:
    """What happened and what was checked."""

    sagas: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    shapes: dict[str, int] = field(default_factory=dict)
    parked: int = 0
    lost: int = 0
    stuck: list[str] = field(default_factory=list)
    """Workflow ids of the sagas that did not settle in time (neither ended nor parked)."""
    kills: int = 0
    server_kills: int = 0
    participant_kills: int = 0
    exclusive_checked: int = 0
    """Exclusive sagas whose runs were checked not to overlap another of the same key."""
    faults: dict[str, int] = field(default_factory=dict)
    retries: int = 0
    seconds: float = 0.0
    settle_seconds: list[float] = field(default_factory=list)
    """Per saga: from its start to its outcome seen."""
    after_faults: float = 0.0
    """From the last fault to the last saga settled."""
    keys_checked: int = 0
    outage: tuple[str, float] | None = None
    """The service that went down for a while, and for how many seconds."""
    breaker: bool = True
    waited: int = 0
    """Sagas a step of which waited for a breaker (a ``service_released`` signal)."""
    drain: float = 0.0
    """From the service's return to the last saga that waited settled."""
    violations: list[str] = field(default_factory=list)
    """Broken guarantees: a store half-done, an effect applied twice, a wrong key, a saga lost."""
    unexpected: list[str] = field(default_factory=list)
    """Sagas that ended otherwise than their plan, consistently (for example a step that ran
    out of its time budget under the chaos and was compensated): counted, and a long run exits
    non-zero on them."""

    @property
    def completed(self) -> int:
        return self.outcomes.get("COMPLETED", 0)

    def percentile(self, share: float) -> float:
        times = sorted(self.settle_seconds)
        return times[min(len(times) - 1, int(share * len(times)))] if times else 0.0

    def markdown(self) -> str:
        """The report as a markdown section."""
        faults = ", ".join(f"{k} {v}" for k, v in sorted(self.faults.items())) or "none"
        ends = ", ".join(f"{n} {k.lower()}" for k, n in sorted(self.outcomes.items()))
        shapes = ", ".join(f"{n} {k}" for k, n in sorted(self.shapes.items()))
        lines = [
            f"- sagas: {self.sagas} ({ends}; {self.parked} parked, {self.lost} lost) in "
            f"{self.seconds:.0f} s",
            f"- shapes: {shapes}",
            f"- worker processes SIGKILLed and restarted: {self.kills}",
            f"- Temporal dev server SIGKILLed (process group) and restarted on its SQLite file: "
            f"{self.server_kills}",
            f"- participant services SIGKILLed and restarted on their stores: "
            f"{self.participant_kills}",
            f"- faults injected by the participants: {faults}",
            f"- retries seen (attempts beyond the first, from the sagas' state): {self.retries}",
            f"- time to settle, start to outcome: p50 {self.percentile(0.5):.1f} s, "
            f"p99 {self.percentile(0.99):.1f} s, max {max(self.settle_seconds, default=0):.1f} s",
            f"- last saga settled {self.after_faults:.1f} s after the last fault",
            f"- participant calls whose idempotency key was checked: {self.keys_checked}",
            f"- exclusive sagas (one at a time per customer) checked, from their histories, not "
            f"to overlap another of the same key: {self.exclusive_checked}",
            *self._outage_lines(),
            f"- sagas that ended otherwise than planned, consistently: {len(self.unexpected)}",
            *(f"  - {u}" for u in self.unexpected[:10]),
            f"- violations (a store half-done, an effect applied twice, a wrong key, a saga "
            f"lost): {len(self.violations)}",
            *(f"  - {v}" for v in self.violations[:20]),
        ]
        return "\n".join(lines)

    def _outage_lines(self) -> list[str]:
        if self.outage is None:
            return []
        service, seconds = self.outage
        calls = self.faults.get("outage", 0)
        return [
            f"- outage: {service} answered 503 to everything, probes included, for {seconds:g} s "
            f"(breakers {'on' if self.breaker else 'off'}): {calls} calls reached it while down "
            f"({calls / (seconds / 60):.0f} a minute); {self.waited} sagas waited for its "
            f"breaker; the last of them settled {self.drain:.1f} s after it came back",
        ]


def _ephemeral_low() -> int:
    """The first port the OS may give an outgoing connection (Linux: ip_local_port_range)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768


def _free_block(size: int) -> int:
    """A base port with ``size`` free ports after it, below the ephemeral range.

    The participants are restarted on these ports after each SIGKILL: a port in the ephemeral
    range may meanwhile be the source port of some outgoing connection (seen once in CI:
    "Address already in use" on restart), one below it never is.
    """
    top = max(11_000, _ephemeral_low() - size)
    for _ in range(200):
        base = random.randrange(10_000, top)
        sockets = []
        try:
            for port in range(base, base + size):
                s = socket.socket()
                s.bind(("127.0.0.1", port))
                sockets.append(s)
            return base
        except OSError:
            continue
        finally:
            for s in sockets:
                s.close()
    raise RuntimeError("no block of free ports")


class Harness:
    """The processes under test and the faults done to them."""

    def __init__(
        self, tmp: Path, seed: int, *, broken_keys: bool = False, breaker: bool = True
    ) -> None:
        self.tmp = tmp
        self.rng = random.Random(seed)
        self.broken_keys = broken_keys
        self.breaker = breaker
        self.down_until = 0.0
        """When the outage (if any) ends (``time.monotonic()``)."""
        self.down_service = ""
        self.server = DevServer(DevServerOptions.in_folder(tmp, ui=False))
        self.base_port = _free_block(len(CATALOG))
        self.endpoints = [f"127.0.0.1:{free_port()}" for _ in range(WORKERS)]
        self.urls: dict[str, str] = {}
        self.services: subprocess.Popen[bytes] | None = None
        self.workers: list[subprocess.Popen[bytes]] = []
        self.report = ChaosReport()
        self.last_fault = time.monotonic()

    def start_services(self) -> None:
        urls_file = self.tmp / "urls.json"
        urls_file.unlink(missing_ok=True)
        log = open(self.tmp / "services.log", "ab")  # noqa: SIM115
        self.services = subprocess.Popen(
            [sys.executable, "-m", "services", "--data-dir", str(self.tmp / "svc"),
             "--urls-file", str(urls_file), "--base-port", str(self.base_port),
             *(f"--reply-url=http://{e}/replies" for e in self.endpoints)],
            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while not urls_file.exists():
            if time.monotonic() > deadline or self.services.poll() is not None:
                raise RuntimeError(f"participants did not start; see {self.tmp}/services.log")
            time.sleep(0.05)
        self.urls = json.loads(urls_file.read_text())

    def start_worker(self, slot: int) -> subprocess.Popen[bytes]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SAGALOOM_")}
        env.update({f"SAGALOOM_SERVICE_{k.upper()}": v for k, v in self.urls.items()})
        modules = "tests._chaos_sagas" + (",tests._broken_keys" if self.broken_keys else "")
        env.update(
            TEMPORAL_ADDRESS=self.server.address,
            SAGALOOM_TASK_QUEUE=QUEUE,
            SAGALOOM_SAGA_MODULES=modules,
            SAGALOOM_GRACEFUL_SHUTDOWN_SECONDS="2",
            SAGALOOM_LOG_LEVEL="ERROR",
            SAGALOOM_HEALTH_ADDRESS=self.endpoints[slot],
            SAGALOOM_REPLY_SECRET=REPLY_SECRET,
            SAGALOOM_BREAKER="on" if self.breaker else "off",
            SAGALOOM_BREAKER_PROBE_SECONDS="2",
        )
        log = open(self.tmp / "workers.log", "ab")  # noqa: SIM115
        return subprocess.Popen(
            [sys.executable, "-m", "sagaloom", "worker"],
            env=env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    async def wait_until_polling(self, client: Client, within: float = 60) -> None:
        """Fail fast when a worker cannot start (its log says why) instead of waiting it out."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            for worker in self.workers:
                if worker.poll() is not None:
                    log = (self.tmp / "workers.log").read_text()[-2000:]
                    raise RuntimeError(f"a chaos worker exited at start:\n{log}")
            response = await client.workflow_service.describe_task_queue(
                DescribeTaskQueueRequest(
                    namespace="default",
                    task_queue=TaskQueue(name=QUEUE),
                    task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
                )
            )
            if len({p.identity for p in response.pollers}) >= len(self.workers):
                return
            await asyncio.sleep(0.2)
        raise RuntimeError("chaos workers did not start polling in time")

    async def chaos(
        self, stop: asyncio.Event, kill_every: float, server_every: int, services_every: int
    ) -> None:
        """Every ``kill_every`` s SIGKILL a worker; every n-th time the server or participants."""
        tick = 0
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), kill_every)
                return
            except TimeoutError:
                pass
            tick += 1
            slot = self.rng.randrange(len(self.workers))
            self.workers[slot].send_signal(signal.SIGKILL)
            await asyncio.to_thread(self.workers[slot].wait)
            self.workers[slot] = self.start_worker(slot)
            self.report.kills += 1
            if server_every and tick % server_every == 0:
                process = self.server._process
                if process is not None:
                    os.killpg(process.pid, signal.SIGKILL)  # its whole process group
                    await asyncio.to_thread(process.wait)
                    self.server._process = None
                await self.server.start()
                self.report.server_kills += 1
            if services_every and tick % services_every == 0 and self.services is not None:
                await self.count_faults()  # the counts live in the processes about to die
                self.services.send_signal(signal.SIGKILL)
                await asyncio.to_thread(self.services.wait)
                await asyncio.to_thread(self.start_services)  # same stores, same ports
                await self.inject_faults()
                await self.resume_outage()  # a restarted participant is still down
                self.report.participant_kills += 1
            self.last_fault = time.monotonic()

    async def count_faults(self) -> None:
        """Add the faults the participants injected so far to the report."""
        async with httpx.AsyncClient(timeout=30) as http:
            for url in self.urls.values():
                try:
                    injected = (await http.get(f"{url}/_admin/state")).json()["injected"]
                except httpx.HTTPError:
                    continue
                for mode, count in injected.items():
                    self.report.faults[mode] = self.report.faults.get(mode, 0) + count

    async def inject_faults(self, seed: int = 7) -> None:
        async with httpx.AsyncClient(timeout=60) as http:
            for service, url in self.urls.items():
                for n, fault in enumerate(PARTICIPANT_FAULTS):
                    await http.post(
                        f"{url}/_admin/faults",
                        json={**fault, "seed": seed * 100 + n + hash(service) % 97},
                    )

    async def begin_outage(self, service: str, seconds: float) -> None:
        """Take ``service`` down (503 to everything) for ``seconds``."""
        self.down_service, self.down_until = service, time.monotonic() + seconds
        await self.resume_outage()

    async def resume_outage(self) -> None:
        left = self.down_until - time.monotonic()
        if left > 0:
            async with httpx.AsyncClient(timeout=30) as http:
                url = self.urls[self.down_service]
                await http.post(f"{url}/_admin/outage", json={"seconds": left})

    def stop(self) -> None:
        for process in [*self.workers, *([self.services] if self.services else [])]:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in [*self.workers, *([self.services] if self.services else [])]:
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
        self.server.stop()


async def start(client: Client, item: Plan) -> WorkflowHandle[Any, Any]:
    """Start a saga, retrying through a server restart (a start that did land is kept)."""
    for _ in range(240):
        try:
            return await start_saga(client, item.saga, item.data, task_queue=QUEUE)
        except WorkflowAlreadyStartedError:
            return client.get_workflow_handle(f"{item.saga.name}-{item.key}")
        except RPCError:
            await asyncio.sleep(0.5)
    raise RuntimeError(f"could not start saga {item.key}")


async def settle(
    handle: WorkflowHandle[Any, Any], item: Plan, within: float
) -> tuple[Outcome | None, float]:
    """The saga's outcome (cancelling it first when planned) and when it was seen."""
    begin = time.monotonic()
    deadline = begin + within
    if item.cancel_after is not None:
        await asyncio.sleep(item.cancel_after)
        while time.monotonic() < deadline:
            try:
                await handle.cancel()
                break
            except RPCError as err:
                if "completed" in err.message or "not found" in err.message.lower():
                    break
                await asyncio.sleep(0.5)
    while time.monotonic() < deadline:
        try:
            result = await asyncio.wait_for(outcome(handle), max(1.0, deadline - time.monotonic()))
            return result, time.monotonic() - begin
        except (RPCError, RuntimeError, TimeoutError):
            await asyncio.sleep(1)
    return None, time.monotonic() - begin


async def run_chaos(
    tmp: Path,
    sagas: int,
    *,
    seed: int = 7,
    kill_every: float = 3.0,
    server_every: int = 4,
    services_every: int = 5,
    within: float = 420,
    broken_keys: bool = False,
    chaos_seconds: float | None = None,
    settle_seconds: float = 300,
    breaker: bool = True,
    outage: tuple[str, float] | None = None,
    outage_after: float = 3.0,
) -> ChaosReport:
    """Run the whole scenario and return its report.

    ``outage``: (service, seconds): that participant answers 503 to everything for that long,
    from ``outage_after`` seconds into the run.
    """
    harness = Harness(tmp, seed, broken_keys=broken_keys, breaker=breaker)
    report = harness.report
    report.sagas, report.breaker, report.outage = sagas, breaker, outage
    await harness.server.start()
    harness.start_services()
    try:
        await harness.inject_faults(seed)
        harness.workers = [harness.start_worker(slot) for slot in range(WORKERS)]
        client = await connect(harness.server.address)
        await harness.wait_until_polling(client)
        begin = time.monotonic()
        batch = os.urandom(3).hex()
        plans = [plan(i, batch) for i in range(sagas)]
        stop = asyncio.Event()
        # The chaos starts with the first saga and lasts until the last one settles.
        chaos = asyncio.create_task(harness.chaos(stop, kill_every, server_every, services_every))
        if outage is not None:
            outage_task = asyncio.get_running_loop().call_later(
                outage_after, lambda: asyncio.ensure_future(harness.begin_outage(*outage))
            )
        handles = [await start(client, item) for item in plans]
        tasks = [
            asyncio.ensure_future(settle(h, item, within))
            for h, item in zip(handles, plans, strict=True)
        ]
        ended: dict[int, float] = {}  # when each settled

        def note_end(n: int) -> Callable[[object], None]:
            return lambda _: ended.__setitem__(n, time.monotonic())

        for n, task in enumerate(tasks):
            task.add_done_callback(note_end(n))
        # The faults last until every saga settles, or for chaos_seconds (then they settle).
        await asyncio.wait(tasks, timeout=chaos_seconds)
        stop.set()
        await chaos
        # Then every saga has settle_seconds to end: one that does not is named, never awaited.
        _, stuck = await asyncio.wait(tasks, timeout=settle_seconds)
        for task in stuck:
            task.cancel()
        results = [(None, time.monotonic() - begin) if t in stuck else t.result() for t in tasks]
        report.seconds = time.monotonic() - begin
        report.after_faults = max(0.0, time.monotonic() - harness.last_fault)
        await check(harness, client, handles, plans, results)
        if outage is not None:
            outage_task.cancel()
            await _waits(harness, handles, ended)
    finally:
        harness.stop()
    return report


async def _waits(
    harness: Harness, handles: list[WorkflowHandle[Any, Any]], ended: dict[int, float]
) -> None:
    """Count the sagas that waited for a breaker, and when the last of them settled."""
    report, last = harness.report, harness.down_until
    for n, handle in enumerate(handles):
        try:
            history = await handle.fetch_history()
        except RPCError:
            continue
        if any(
            _released(e.workflow_execution_signaled_event_attributes, harness.down_service)
            for e in history.events
            if e.HasField("workflow_execution_signaled_event_attributes")
        ):
            report.waited += 1
            last = max(last, ended.get(n, last))
    report.drain = max(0.0, last - harness.down_until)


def _released(signal: Any, service: str) -> bool:
    """Whether a signal is ``service``'s breaker letting a waiting step go (or give up)."""
    if signal.signal_name != RELEASED_SIGNAL or not signal.input.payloads:
        return False
    return bool(json.loads(signal.input.payloads[0].data).get("service") == service)


STEP_OF = {"inventory": "reserve-stock", "payment": "charge-payment", "shipping": "create-shipment",
           "flights": "book-flight", "hotels": "book-hotel", "cars": "book-car"}  # fmt: skip
SERVICES_OF = {
    "ChaosTripSaga": ("flights", "hotels", "cars"),
    "ChaosNestedSaga": ("inventory", "payment", "flights", "hotels", "cars"),
}
CHILD_STEP = {"ChaosNestedSaga": "trip"}
"""Sagas whose trip services are called by a child saga: ``<workflow id>:<child step>``."""


def records_of(item: Plan, workflow_id: str) -> list[tuple[str, str, str]]:
    """``(service, record key, idempotency key)`` of every record a saga's steps write.

    A fan-out item's key is ``<workflow id>:<step>:items-<batch>:<item key>``.
    """
    key, saga = item.key, item.saga.name
    if item.saga is CHAOS_ITINERARY:
        found = [("payment", key, f"{workflow_id}:charge")]
        for n in range(len(LEGS)):
            for service, step in (("flights", "book-flights"), ("cars", "rent-cars")):
                found.append((service, f"{key}-leg{n}", f"{workflow_id}:{step}:items-0:leg{n}"))
        return found
    services = SERVICES_OF.get(saga, ("inventory", "payment", "shipping"))
    return [(s, key, own_key(saga, workflow_id, s)) for s in services]


def _car_in_venice(states: dict[str, Any], key: str) -> bool:
    return any(e["key"] == f"{key}-leg1" and e["op"] == "do" for e in states["cars"]["log"])


def own_key(saga: str, workflow_id: str, service: str) -> str:
    """The idempotency key a step's call to ``service`` must carry."""
    child = CHILD_STEP.get(saga)
    if child and service in ("flights", "hotels", "cars"):
        workflow_id = f"{workflow_id}:{child}"
    return f"{workflow_id}:{STEP_OF[service]}"


async def check(
    harness: Harness,
    client: Client,
    handles: list[WorkflowHandle[Any, Any]],
    plans: list[Plan],
    results: list[tuple[Outcome | None, float]],
) -> None:
    """Check every invariant from the participants' stores and the sagas' outcomes."""
    report = harness.report
    async with httpx.AsyncClient(timeout=60) as http:
        states = {s: (await http.get(f"{u}/_admin/state")).json() for s, u in harness.urls.items()}
    await harness.count_faults()
    for handle, item, (result, seconds) in zip(handles, plans, results, strict=True):
        key, wid = item.key, handle.id
        report.shapes[item.saga.name] = report.shapes.get(item.saga.name, 0) + 1
        held = {}
        for service, record_key, own in records_of(item, wid):
            state = states[service]
            record = next((r for r in state["records"] if r["key"] == record_key), None)
            where = service if record_key == key else f"{service}/{record_key}"
            held[where] = (
                "absent" if record is None or record["payload"] is None else record["status"]
            )
            applied = [e for e in state["log"] if e["key"] == record_key and e["op"] == "do"]
            if len(applied) > 1:
                report.violations.append(f"{record_key}: {service} applied {len(applied)} times")
            for seen in (r for r in state["received"] if r["key"] == record_key):
                report.keys_checked += 1
                want = own if seen["op"] == "do" else f"{own}:compensate"
                if seen["idem_key"] != want:
                    report.violations.append(
                        f"{key}: {service} received {seen['op']} under key {seen['idem_key']!r}, "
                        f"not the step's own {want!r}"
                    )
                    break
        if result is None:
            await _unsettled(report, handle, key, held)
            continue
        report.settle_seconds.append(seconds)
        status = result.status.value
        report.outcomes[status] = report.outcomes.get(status, 0) + 1
        if item.saga is CHAOS_ITINERARY:  # Venice's car was refused: never booked
            held = {w: h for w, h in held.items() if w != f"cars/{key}-leg1"}
            if _car_in_venice(states, key):
                report.violations.append(f"{key}: a car was booked in Venice")
        if result.status is SagaStatus.COMPLETED:
            if set(held.values()) != {"active"}:
                report.violations.append(f"{key}: completed but stores hold {held}")
        elif result.status in (SagaStatus.COMPENSATED, SagaStatus.CANCELED):
            if "active" in held.values():
                report.violations.append(f"{key}: {status.lower()} but stores hold {held}")
        else:
            report.violations.append(f"{key}: ended {status}: {result.error}")
        reported = result.report.failed_step if result.report else None
        if item.cancel_after is not None:  # cancelled, unless it finished first
            as_planned = result.status in (SagaStatus.CANCELED, SagaStatus.COMPLETED)
        else:
            as_planned = result.status is item.want and reported == item.failed_step
        if not as_planned:
            why = (result.report.error or "") if result.report else (result.error or "")
            report.unexpected.append(
                f"{key}: {status} at {reported}, expected {item.want.value} at "
                f"{item.failed_step} ({why[:160]})"
            )
        try:
            state = await handle.query("saga_state", result_type=SagaState)
            report.retries += sum(
                max(0, s.attempts - 1) + max(0, s.compensation_attempts - 1) for s in state.steps
            )
        except RPCError:
            pass
    await _one_holder_at_a_time(report, handles, plans)


async def _one_holder_at_a_time(
    report: ChaosReport, handles: list[WorkflowHandle[Any, Any]], plans: list[Plan]
) -> None:
    """Exclusive sagas of one customer never ran at once: from their histories, each one's
    first step came after the previous one's last step or compensation ended."""
    spans: dict[str, list[tuple[datetime, datetime, str]]] = {}
    for handle, item in zip(handles, plans, strict=True):
        if item.saga is not CHAOS_EXCLUSIVE_ORDER:
            continue
        first = last = None
        async for event in handle.fetch_history_events():
            if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
                if first is None:  # (keys are taken by local activities: no task here)
                    first = event.event_time.ToDatetime()
            elif event.event_type in _ACTIVITY_ENDS and first is not None:
                last = event.event_time.ToDatetime()
        if first is not None and last is not None:
            spans.setdefault(item.data["customer"], []).append((first, last, handle.id))
    for customer, runs in spans.items():
        runs.sort()
        report.exclusive_checked += len(runs)
        for (_, a_end, a), (b_start, _, b) in itertools.pairwise(runs):
            if b_start < a_end:
                report.violations.append(f"customer:{customer}: {a} and {b} ran at once")


_ACTIVITY_ENDS = (
    EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED,
    EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED,
    EventType.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT,
    EventType.EVENT_TYPE_ACTIVITY_TASK_CANCELED,
)


async def _unsettled(
    report: ChaosReport, handle: WorkflowHandle[Any, Any], key: str, held: dict[str, str]
) -> None:
    """A saga with no outcome: parked (then its undone steps must be undone) or lost."""
    try:
        state = await handle.query("saga_state", result_type=SagaState)
    except RPCError:
        state = None
    if state is None or state.status is not SagaStatus.NEEDS_ATTENTION:
        report.lost += 1
        report.stuck.append(handle.id)
        report.violations.append(f"{key}: never settled: workflow {handle.id} ({held})")
        return
    report.parked += 1
    by_step = {step: service for service, step in STEP_OF.items()}
    for step in state.steps:
        service = by_step.get(step.name)
        if step.status.value == "compensated" and service in held and held[service] != "undone":
            report.violations.append(f"{key}: parked, {step.name} compensated but {held}")


def main() -> None:
    """``python -m tests.chaos``: a longer run with a report."""
    parser = argparse.ArgumentParser(prog="python -m tests.chaos", description=__doc__)
    parser.add_argument("--sagas", type=int, default=600)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--kill-every", type=float, default=1.0)
    parser.add_argument("--server-every", type=int, default=15, help="kill ticks per server kill")
    parser.add_argument("--services-every", type=int, default=12, help="… per participants kill")
    parser.add_argument("--chaos-seconds", type=float, default=300, help="then faults stop")
    parser.add_argument(
        "--settle-seconds", type=float, default=300, help="after the faults stop; then stuck"
    )
    parser.add_argument(
        "--outage-seconds", type=float, default=0, help="one participant down this long (503s)"
    )
    parser.add_argument("--outage-service", default="payment")
    parser.add_argument("--no-breaker", action="store_true", help="workers without breakers")
    parser.add_argument("--report", type=Path)
    args = parser.parse_args()
    outage = (args.outage_service, args.outage_seconds) if args.outage_seconds else None
    with tempfile.TemporaryDirectory(prefix="sagaloom-chaos-") as tmp:
        report = asyncio.run(
            run_chaos(
                Path(tmp),
                args.sagas,
                seed=args.seed,
                kill_every=args.kill_every,
                server_every=args.server_every,
                services_every=args.services_every,
                within=1800,
                chaos_seconds=args.chaos_seconds,
                settle_seconds=args.settle_seconds,
                breaker=not args.no_breaker,
                outage=outage,
            )
        )
    text = report.markdown()
    print(text)
    for workflow_id in report.stuck:
        print(f"stuck: {workflow_id} (temporal workflow show -w '{workflow_id}')", file=sys.stderr)
    if args.report:
        args.report.write_text(
            "# Chaos run\n\nGenerated by `python -m tests.chaos "
            f"--sagas {args.sagas} --seed {args.seed} --kill-every {args.kill_every} "
            f"--server-every {args.server_every} --services-every {args.services_every} "
            f"--chaos-seconds {args.chaos_seconds:g}"
            + (f" --outage-seconds {args.outage_seconds:g}" if outage else "")
            + (" --no-breaker" if args.no_breaker else "")
            + "` on "
            f"{time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores.\n\n{text}\n"
        )
    sys.exit(1 if report.violations or report.unexpected else 0)


if __name__ == "__main__":
    main()
