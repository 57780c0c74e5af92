"""The in-process shape: worker and client in one process, every saga started at once.

How a team measures the engine against its own hand-written saga: one program that builds a
worker, starts M sagas together and waits for each result. Raw uses the SDK alone
(``client.start_workflow``, ``handle.result()``); the engine uses the README's API
(``start_saga``, ``outcome``, a worker from ``build_worker``); the fast path adds local
activities and eager start. Each round runs every variant on a fresh dev server, in a rotated
order, so a server's growing database or the machine's mood favours none of them.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from temporalio.client import Client, WorkflowFailureError
from temporalio.worker import Worker

from bench._models import BenchInput
from bench._raw import RawSaga
from bench._sagas import (
    ACTIVITIES,
    BENCH_FAST,
    BENCH_LEAN,
    BENCH_QUIET,
    BenchFastSaga,
    BenchLeanSaga,
    BenchQuietSaga,
)
from sagaloom import Saga
from sagaloom.client import outcome, start_saga
from sagaloom.worker import WorkerConfig, build_worker

__all__ = [
    "BREAKDOWN",
    "VARIANTS",
    "InProcessResult",
    "Variant",
    "cpu_seconds",
    "raw_one",
    "run_inprocess",
    "run_open_loop",
    "worker_for",
]

TICKS = os.sysconf("SC_CLK_TCK")
One = Callable[[Client, str, BenchInput], Awaitable[bool]]


def cpu_seconds() -> float:
    """This process's CPU time so far (user and system), in seconds."""
    with open(f"/proc/{os.getpid()}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


async def raw_one(client: Client, queue: str, data: BenchInput) -> bool:
    handle = await client.start_workflow(
        RawSaga.run, data, id=f"RawSaga-{uuid.uuid4().hex}", task_queue=queue
    )
    try:
        await handle.result()
        return True
    except WorkflowFailureError:
        return False


def _engine_one(saga: Saga[Any], *, eager: bool) -> One:
    async def one(client: Client, queue: str, data: BenchInput) -> bool:
        handle = await start_saga(
            client,
            saga,
            data,
            id=f"{saga.name}-{uuid.uuid4().hex}",
            task_queue=queue,
            request_eager_start=eager,
        )
        return (await outcome(handle)).status.value == "COMPLETED"

    return one


@dataclass(frozen=True)
class Variant:
    """How one variant starts a saga, and the worker that runs it."""

    one: One
    workflow: type | None = None
    """The engine saga's workflow class; None: the hand-written saga on a plain Worker."""
    sandboxed: bool = True


VARIANTS: dict[str, Variant] = {
    "raw SDK saga": Variant(raw_one),
    "engine (defaults)": Variant(_engine_one(BENCH_LEAN, eager=False), BenchLeanSaga),
    "engine, live_details=False": Variant(_engine_one(BENCH_QUIET, eager=False), BenchQuietSaga),
    "engine fast path (local activities + eager start)": Variant(
        _engine_one(BENCH_FAST, eager=True), BenchFastSaga
    ),
    "engine fast path, unsandboxed (SAGALOOM_SANDBOX=off)": Variant(
        _engine_one(BENCH_FAST, eager=True), BenchFastSaga, sandboxed=False
    ),
}
BREAKDOWN = [
    "raw SDK saga",
    "engine (defaults)",
    "engine fast path (local activities + eager start)",
]
"""Variants whose histories the per-saga breakdown reads."""


@dataclass
class InProcessResult:
    """One run's figures."""

    name: str
    sagas: int
    seconds: float
    cpu: float
    server_cpu: float
    latencies: list[float] = field(default_factory=list)
    unexpected: int = 0

    @property
    def rate(self) -> float:
        """Sagas per second."""
        return self.sagas / self.seconds

    def pct(self, q: float) -> float:
        """Start-to-result latency percentile, milliseconds."""
        ordered = sorted(self.latencies)
        return 1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def worker_for(client: Client, name: str, queue: str) -> Worker:
    """A worker for variant ``name`` on ``queue``, as its user would build it."""
    variant = VARIANTS[name]
    if variant.workflow is None:
        return Worker(client, task_queue=queue, workflows=[RawSaga], activities=ACTIVITIES)
    return build_worker(
        client,
        [variant.workflow],
        config=WorkerConfig(task_queue=queue, sandboxed=variant.sandboxed),
        activities=ACTIVITIES,
        passthrough=["bench"],
    )


async def run_inprocess(
    client: Client,
    name: str,
    inputs: Sequence[BenchInput],
    server_cpu: Callable[[], float],
) -> InProcessResult:
    """One run of variant ``name``: a fresh worker in this process, every saga at once."""
    one = VARIANTS[name].one
    queue = f"inproc-{uuid.uuid4().hex[:8]}"
    async with worker_for(client, name, queue):
        warm = [BenchInput(id=uuid.uuid4().hex[:12]) for _ in range(10)]
        await asyncio.gather(*(one(client, queue, d) for d in warm))
        cpu0, server0 = cpu_seconds(), server_cpu()
        latencies: list[float] = []

        async def timed(data: BenchInput) -> bool:
            begin = time.perf_counter()
            ok = await one(client, queue, data)
            latencies.append(time.perf_counter() - begin)
            return ok

        begin = time.perf_counter()
        completed = await asyncio.gather(*(timed(d) for d in inputs))
        seconds = time.perf_counter() - begin
        cpu, server = cpu_seconds() - cpu0, server_cpu() - server0
    unexpected = sum(ok == (d.fail_at > 0) for ok, d in zip(completed, inputs, strict=True))
    return InProcessResult(name, len(inputs), seconds, cpu, server, latencies, unexpected)


async def run_open_loop(
    client: Client,
    name: str,
    rate: float,
    seconds: float,
    inputs: Callable[[int], list[BenchInput]],
) -> InProcessResult:
    """Open loop: sagas arrive at ``rate`` per second for ``seconds``, whatever the backlog.

    Each arrival is started on schedule (not when an earlier one finishes), so queueing shows
    in the latencies instead of slowing the arrivals down.
    """
    one = VARIANTS[name].one
    queue = f"open-{uuid.uuid4().hex[:8]}"
    count = int(rate * seconds)
    data = inputs(count)
    latencies: list[float] = []
    unexpected = 0

    async def arrival(item: BenchInput) -> None:
        nonlocal unexpected
        begin = time.perf_counter()
        unexpected += await one(client, queue, item) != (item.fail_at == 0)
        latencies.append(time.perf_counter() - begin)

    async with worker_for(client, name, queue):
        await asyncio.gather(*(one(client, queue, d) for d in inputs(10)))  # warm up
        begin = time.perf_counter()
        tasks = []
        for i, item in enumerate(data):
            delay = begin + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(arrival(item)))
        await asyncio.gather(*tasks)
        took = time.perf_counter() - begin
    return InProcessResult(name, count, took, 0.0, 0.0, latencies, unexpected)
