"""``python -m bench.cost``: what a saga costs the server, the engine against the hand-written saga.

Per saga, side by side in one run: history events (the saga's own, and of every workflow it
touched: fan-out batches, key shards, breakers), **billable actions** as Temporal Cloud counts
them, history bytes, the dev server's CPU and this process's CPU (worker and client together).

Actions are counted from history by Temporal Cloud's published definition
(https://docs.temporal.io/cloud/actions): a workflow started (by a client, a parent or
continue-as-new), each activity attempt, the local activities of one workflow task together as
one, each timer, each search-attribute upsert (not those given at the start, nor
``TemporalChangeVersion``), each signal, each update accepted. Markers (``workflow.patched``)
are not actions. Not in history, so not counted: rejected updates, queries, heartbeats sent to
the server (the benchmark's steps send none).

Shapes: the 4-step saga (completed, and compensating at its last step) with in-process
activities, over HTTP and over NATS commands, with exclusive keys, on the fast path, with
``track_steps``; a fan-out of 1,000 items. The hand-written sagas (``bench._raw``,
``bench._raw_fan``) run on a plain ``Worker``; the engine's on ``run_worker`` (``saga worker``'s
way, the participants beside it), each saga started with ``start_saga``. Each round starts a
fresh tuned dev server and runs the variants in a rotated order; medians and ranges over rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import os
import statistics
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client, WorkflowFailureError
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Worker

from bench._echo import EchoHttp, EchoNats
from bench._fan import FAN, FanInput, finish, reserve, unreserve
from bench._inprocess import cpu_seconds
from bench._models import BenchInput, bench_step, bench_undo
from bench._processes import cpu_seconds as cpu_of
from bench._raw import RawSaga
from bench._raw_fan import RawFanSaga
from bench._sagas import BENCH, BENCH_DISJOINT, BENCH_FAST, BENCH_HTTP, BENCH_LEAN, BENCH_NATS
from sagaloom import Saga
from sagaloom.client import connect, outcome, start_saga
from sagaloom.server import DevServer, DevServerOptions, NatsServer, NatsServerOptions, free_port
from sagaloom.worker import WorkerConfig, configure_logging, run_worker

ACTIONS_SOURCE = "https://docs.temporal.io/cloud/actions"
KINDS = (
    "workflow started",
    "activity attempts",
    "local-activity tasks",
    "timers",
    "search-attribute upserts",
    "signals",
    "updates",
)


def actions(events: Sequence[HistoryEvent]) -> Counter[str]:
    """Billable actions in ``events``, by kind (Temporal Cloud's definition, see the module)."""
    found: Counter[str] = Counter()
    local_tasks: set[int] = set()
    for event in events:
        kind = event.WhichOneof("attributes") or ""
        if kind == "workflow_execution_started_event_attributes":
            found["workflow started"] += 1
        elif kind == "activity_task_started_event_attributes":
            found["activity attempts"] += max(
                event.activity_task_started_event_attributes.attempt, 1
            )
        elif kind == "marker_recorded_event_attributes":
            marker = event.marker_recorded_event_attributes
            if marker.marker_name == "core_local_activity":
                local_tasks.add(marker.workflow_task_completed_event_id)
        elif kind == "timer_started_event_attributes":
            found["timers"] += 1
        elif kind == "upsert_workflow_search_attributes_event_attributes":
            upserted = event.upsert_workflow_search_attributes_event_attributes
            if set(upserted.search_attributes.indexed_fields) - {"TemporalChangeVersion"}:
                found["search-attribute upserts"] += 1
        elif kind == "workflow_execution_signaled_event_attributes":
            found["signals"] += 1
        elif kind == "workflow_execution_update_accepted_event_attributes":
            found["updates"] += 1
    found["local-activity tasks"] = len(local_tasks)
    return found


@dataclass
class Cost:
    """One batch of one variant, per saga."""

    shape: str
    variant: str
    outcome: str
    sagas: int
    saga_events: float = 0
    all_events: float = 0
    history_bytes: float = 0
    actions: Counter[str] = field(default_factory=Counter)
    server_cpu_ms: float = 0
    process_cpu_ms: float = 0

    @property
    def total_actions(self) -> float:
        """Billable actions per saga."""
        return sum(self.actions.values()) / self.sagas


FOUR = "4 steps"
FAN_OUT = "fan-out of 1,000 items"


@dataclass(frozen=True)
class Variant:
    """How one variant starts a saga of an outcome, and whether it is the engine's."""

    name: str
    shape: str
    saga_type: str
    """The workflow type of the variant's sagas (the rest are workflows they touched)."""
    start: Callable[[Client, str, bool], Awaitable[Any]]
    engine: bool = True
    count: int = 20


def _input(shape: str, fail: bool) -> Any:
    """One saga's input: the 4 steps failing at the last, or 1,000 items failing after them."""
    if shape == FAN_OUT:
        return FanInput(id=uuid.uuid4().hex[:12], items=1000, fail=fail)
    return BenchInput(id=uuid.uuid4().hex[:12], fail_at=4 if fail else 0)


def _engine(name: str, shape: str, saga: Saga[Any], *, eager: bool = False) -> Variant:
    async def start(client: Client, queue: str, fail: bool) -> Any:
        data = _input(shape, fail)
        handle = await start_saga(client, saga, data, task_queue=queue, request_eager_start=eager)
        return await outcome(handle)

    return Variant(name, shape, saga.name, start, count=20 if shape == FOUR else 1)


def _raw(shape: str, workflow: Any) -> Variant:
    async def start(client: Client, queue: str, fail: bool) -> Any:
        handle = await client.start_workflow(
            workflow.run,
            _input(shape, fail),
            id=f"{workflow.__name__}-{uuid.uuid4().hex}",
            task_queue=queue,
        )
        with contextlib.suppress(WorkflowFailureError):
            return await handle.result()

    name = "hand-written (raw SDK)"
    return Variant(name, shape, workflow.__name__, start, False, 20 if shape == FOUR else 1)


VARIANTS = (
    _raw(FOUR, RawSaga),
    _engine("engine, defaults", FOUR, BENCH_LEAN),
    _engine("engine, track_steps=True", FOUR, BENCH),
    _engine("engine, exclusive keys (none shared)", FOUR, BENCH_DISJOINT),
    _engine("engine, over HTTP", FOUR, BENCH_HTTP),
    _engine("engine, over NATS commands", FOUR, BENCH_NATS),
    _engine("engine, fast path (local + eager)", FOUR, BENCH_FAST, eager=True),
    _raw(FAN_OUT, RawFanSaga),
    _engine("engine", FAN_OUT, FAN),
)


async def _running_lengths(client: Client) -> dict[str, int]:
    """History length of every running workflow run (closed ones do not grow)."""
    lengths = {}
    async for run in client.list_workflows('ExecutionStatus = "Running"'):
        handle = client.get_workflow_handle(run.id, run_id=run.run_id)
        description = await handle.describe()
        lengths[run.run_id] = description.raw_description.workflow_execution_info.history_length
    return lengths


async def _events_since(
    client: Client, since: datetime, before: dict[str, int], saga_type: str
) -> tuple[list[HistoryEvent], int]:
    """Events every workflow added since ``since``; and how many were the sagas' own."""
    stamp = since.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    query = f'StartTime >= "{stamp}" OR CloseTime >= "{stamp}" OR ExecutionStatus = "Running"'
    events: list[HistoryEvent] = []
    own = 0
    async for run in client.list_workflows(query):
        handle = client.get_workflow_handle(run.id, run_id=run.run_id)
        added = [
            e
            async for e in handle.fetch_history_events()
            if e.event_id > before.get(run.run_id or "", 0)
        ]
        events += added
        if run.workflow_type == saga_type:
            own += len(added)
    return events, own


async def measure(
    client: Client, variant: Variant, queue: str, fail: bool, server_pid: int
) -> Cost:
    """One batch: ``variant.count`` sagas of one outcome started at once, then counted."""
    before = await _running_lengths(client)
    since = datetime.now(UTC)
    await asyncio.sleep(0.01)
    cpu0, server0 = cpu_seconds(), cpu_of(server_pid)
    await asyncio.gather(*(variant.start(client, queue, fail) for _ in range(variant.count)))
    process_cpu, server_cpu = cpu_seconds() - cpu0, cpu_of(server_pid) - server0
    await asyncio.sleep(1.5)  # key releases, breaker signals, end notices settle
    events, own = await _events_since(client, since, before, variant.saga_type)
    n = variant.count
    return Cost(
        variant.shape,
        variant.name,
        "compensated" if fail else "completed",
        n,
        own / n,
        len(events) / n,
        sum(e.ByteSize() for e in events) / n,
        actions(events),
        1000 * server_cpu / n,
        1000 * process_cpu / n,
    )


@contextlib.asynccontextmanager
async def _workers(address: str, nats_url: str, echo_url: str) -> AsyncIterator[tuple[str, str]]:
    """The engine's worker (``run_worker``, as ``saga worker`` runs) and the raw sagas' worker."""
    engine_queue, raw_queue = f"cost-{uuid.uuid4().hex[:6]}", f"cost-raw-{uuid.uuid4().hex[:6]}"
    config = WorkerConfig(
        address=address,
        task_queue=engine_queue,
        saga_modules=("bench._sagas", "bench._fan"),
        services={"echo": echo_url},
        nats_url=nats_url,
    )
    stop = asyncio.Event()
    engine = asyncio.create_task(run_worker(config, stop))
    raw_client = await Client.connect(address, data_converter=pydantic_data_converter)
    raw = Worker(
        raw_client,
        task_queue=raw_queue,
        workflows=[RawSaga, RawFanSaga],
        activities=[bench_step, bench_undo, reserve, unreserve, finish],
        max_concurrent_activities=100,
    )
    try:
        async with raw:
            await asyncio.sleep(3)  # the engine's worker connects and polls
            yield engine_queue, raw_queue
    finally:
        stop.set()
        await asyncio.wait_for(engine, 60)


async def one_round(folder: Path, order: Sequence[Variant], nats_url: str, echo: str) -> list[Cost]:
    """Every variant on one fresh tuned dev server, in ``order``."""
    server = DevServer(
        DevServerOptions(
            port=free_port(),
            ui_port=None,
            db_file=folder / f"{uuid.uuid4().hex[:6]}.db",
            tuned=True,
        )
    )
    await server.start()
    costs = []
    try:
        engine_client = await connect(server.address)
        raw_client = await Client.connect(server.address, data_converter=pydantic_data_converter)
        async with _workers(server.address, nats_url, echo) as (engine_queue, raw_queue):
            for variant in order:
                client, queue = (
                    (engine_client, engine_queue) if variant.engine else (raw_client, raw_queue)
                )
                await asyncio.gather(*(variant.start(client, queue, False) for _ in range(3)))
                for fail in (False, True):
                    cost = await measure(client, variant, queue, fail, server.pid)
                    costs.append(cost)
                    print(
                        f"  {variant.shape} | {variant.name} | {cost.outcome}: "
                        f"{cost.saga_events:.0f} events, {cost.total_actions:.1f} actions, "
                        f"{cost.server_cpu_ms:.1f} ms server, {cost.process_cpu_ms:.1f} ms worker",
                        flush=True,
                    )
    finally:
        server.stop()
    return costs


def _span(values: Sequence[float], digits: int = 0) -> str:
    middle = statistics.median(values)
    low, high = min(values), max(values)
    if round(low, digits) == round(high, digits):
        return f"{middle:,.{digits}f}"
    return f"{middle:,.{digits}f} ({low:,.{digits}f}-{high:,.{digits}f})"


def table(rounds: list[list[Cost]]) -> list[str]:
    """The cost table: one row per shape, variant and outcome; medians (ranges) over rounds."""
    rows = [
        "| shape | variant | saga | history events (saga) | events (all workflows) | billable "
        "actions | of which | history bytes | server CPU ms | worker+client CPU ms |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    base: dict[tuple[str, str], tuple[float, float, float]] = {}
    for index, first in enumerate(rounds[0]):
        runs = [r[index] for r in rounds]
        events = statistics.median(r.saga_events for r in runs)
        spent = statistics.median(r.total_actions for r in runs)
        worker = statistics.median(r.process_cpu_ms for r in runs)
        key = (first.shape, first.outcome)
        if first.variant.startswith("hand-written"):
            base[key] = (events, spent, worker)
            versus = ""
        else:
            raw = base[key]
            versus = (
                f" ({events / raw[0]:.2f}x; actions {spent - raw[1]:+.1f}; "
                f"CPU {worker / raw[2]:.2f}x)"
            )
        kinds = sorted(
            ((k, v / first.sagas) for k, v in first.actions.items() if v),
            key=lambda kv: KINDS.index(kv[0]),
        )
        rows.append(
            f"| {first.shape} | {first.variant} | {first.outcome} "
            f"| {_span([r.saga_events for r in runs])}{versus} "
            f"| {_span([r.all_events for r in runs])} "
            f"| {_span([r.total_actions for r in runs], 1)} "
            f"| {', '.join(f'{k} {v:g}' for k, v in kinds)} "
            f"| {_span([r.history_bytes for r in runs])} "
            f"| {_span([r.server_cpu_ms for r in runs], 1)} "
            f"| {_span([r.process_cpu_ms for r in runs], 1)} |"
        )
    return rows


async def main() -> None:
    """Run the rounds and print the cost table."""
    parser = argparse.ArgumentParser(prog="python -m bench.cost", description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sagas", type=int, default=20, help="sagas per outcome and variant")
    args = parser.parse_args()
    configure_logging("ERROR")
    variants = [
        dataclasses.replace(v, count=args.sagas) if v.shape == FOUR else v for v in VARIANTS
    ]
    rounds: list[list[Cost]] = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        nats = NatsServer(NatsServerOptions.in_folder(folder / "nats"))
        await nats.start()
        http, broker = EchoHttp(), EchoNats(nats.url)
        try:
            for number in range(args.rounds):
                shift = number % len(variants)
                order = variants[shift:] + variants[:shift]
                print(f"round {number + 1}", flush=True)
                costs = await one_round(folder, order, nats.url, http.url)
                by_key = {(c.shape, c.variant, c.outcome): c for c in costs}
                rounds.append(
                    [
                        by_key[(v.shape, v.name, o)]
                        for v in variants
                        for o in ("completed", "compensated")
                    ]
                )
        finally:
            broker.close()
            http.close()
            nats.stop()
    print(
        f"\nGenerated by `python -m bench.cost --rounds {args.rounds} --sagas {args.sagas}` on "
        f"{time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores; actions as {ACTIONS_SOURCE} "
        "counts them, from history. Medians (range) over the rounds; ratios to the hand-written "
        "saga of the same shape and outcome.\n"
    )
    print("\n".join(table(rounds)))


if __name__ == "__main__":
    asyncio.run(main())
