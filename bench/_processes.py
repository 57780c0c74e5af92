"""The separate-process shape: worker processes (``bench.worker``), 100 sagas in flight.

Also the memory scenario (many sagas open at once on one worker).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from temporalio.client import Client, WorkflowFailureError

from bench._sagas import ACTIVITIES, SAGA_DEFS, WORKFLOWS, BenchInput
from sagaloom.client import start_attributes
from sagaloom.server import DevServer
from sagaloom.worker import WorkerConfig, build_worker, load_sagas
from workers.config import SAGA_MODULES

TICKS = os.sysconf("SC_CLK_TCK")
SAGAS = {s.name: s for s in (*SAGA_DEFS, *(c.saga for c in load_sagas(SAGA_MODULES).values()))}


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def memory_kib(pid: int, field_name: str) -> int:
    """A ``/proc/<pid>/status`` memory field (VmRSS, VmHWM) in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1])
    return 0


@dataclass
class Result:
    """One variant's figures."""

    name: str
    sagas: int
    seconds: float
    latencies: list[float]
    worker_cpu: float
    worker_rss_kib: int
    server_cpu: float
    failures: int = 0
    client_cpu: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        """Sagas per second."""
        return self.sagas / self.seconds

    def pct(self, q: float) -> float:
        """Latency percentile in milliseconds."""
        ordered = sorted(self.latencies)
        return 1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Workers:
    """``n`` benchmark worker processes on one task queue."""

    def __init__(self, address: str, n: int, extra: Sequence[str] = ()) -> None:
        self.queue = f"bench-{uuid.uuid4().hex[:8]}"
        self.processes = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "bench.worker",
                    "--address",
                    address,
                    "--task-queue",
                    self.queue,
                    *extra,
                ],
                stdout=subprocess.PIPE,
            )
            for _ in range(n)
        ]
        for process in self.processes:
            assert process.stdout is not None
            if process.stdout.readline().strip() != b"ready":
                raise RuntimeError("a benchmark worker failed to start")

    @property
    def pids(self) -> list[int]:
        """Process ids of the workers."""
        return [p.pid for p in self.processes]

    def stop(self) -> None:
        """Stop every worker (SIGTERM) and wait for it."""
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            process.wait(30)


async def run_batch(
    client: Client,
    workflow: str,
    inputs: Sequence[Any],
    queue: str,
    *,
    eager: bool = False,
    inflight: int = 100,
) -> tuple[float, list[float], int]:
    """Start every input, wait for every result; return (seconds, latencies, unexpected)."""
    gate = asyncio.Semaphore(inflight)
    latencies: list[float] = []
    unexpected = 0

    async def one(data: Any) -> None:
        nonlocal unexpected
        async with gate:
            started = time.perf_counter()
            saga = SAGAS.get(workflow)
            # Engine sagas start labelled, as start_saga starts them (no upsert needed).
            labels = start_attributes(saga, data) if saga is not None else None
            handle = await client.start_workflow(
                workflow,
                data,
                id=f"{workflow}-{uuid.uuid4().hex}",
                task_queue=queue,
                search_attributes=labels,
                request_eager_start=eager,
            )
            expect_failure = getattr(data, "fail_at", 0) > 0 or (
                isinstance(data, dict) and data.get("amount_cents", 0) > 100_000
            )
            try:
                await handle.result()
                unexpected += expect_failure
            except WorkflowFailureError:
                unexpected += not expect_failure
            latencies.append(time.perf_counter() - started)

    begin = time.perf_counter()
    await asyncio.gather(*(one(d) for d in inputs))
    return time.perf_counter() - begin, latencies, unexpected


def bench_inputs(count: int, fail_share: float) -> list[BenchInput]:
    """``count`` inputs, every ``1/fail_share``-th failing at the last step."""
    every = round(1 / fail_share) if fail_share else 0
    return [
        BenchInput(id=uuid.uuid4().hex[:12], fail_at=4 if every and i % every == 0 else 0)
        for i in range(count)
    ]


async def measure(
    name: str,
    client: Client,
    server: DevServer,
    workflow: str,
    inputs: Callable[[int], Sequence[Any]],
    count: int,
    *,
    processes: int = 1,
    extra: Sequence[str] = (),
) -> Result:
    """Fresh workers, a warm-up batch, then the measured batch."""
    workers = Workers(server.address, processes, extra)
    try:
        await run_batch(client, workflow, inputs(20), workers.queue)
        cpu0 = sum(cpu_seconds(p) for p in workers.pids)
        server0, client0 = cpu_seconds(server.pid), cpu_seconds(os.getpid())
        seconds, latencies, unexpected = await run_batch(
            client, workflow, inputs(count), workers.queue
        )
        worker_cpu = sum(cpu_seconds(p) for p in workers.pids) - cpu0
        server_cpu = cpu_seconds(server.pid) - server0
        client_cpu = cpu_seconds(os.getpid()) - client0
        rss = max(memory_kib(p, "VmHWM") for p in workers.pids)
    finally:
        workers.stop()
    return Result(
        name, count, seconds, latencies, worker_cpu, rss, server_cpu, unexpected, client_cpu
    )


async def measure_eager(
    name: str, client: Client, server: DevServer, count: int, fail_share: float
) -> Result:
    """The fast path with eager start: the starting process hosts the worker."""
    queue = f"bench-eager-{uuid.uuid4().hex[:8]}"
    worker = build_worker(
        client,
        config=WorkerConfig(task_queue=queue),
        workflows=WORKFLOWS,
        activities=ACTIVITIES,
        passthrough=["bench"],
    )
    me = os.getpid()
    async with worker:
        await run_batch(client, "BenchFastSaga", bench_inputs(20, fail_share), queue, eager=True)
        cpu0, server0 = cpu_seconds(me), cpu_seconds(server.pid)
        seconds, latencies, unexpected = await run_batch(
            client, "BenchFastSaga", bench_inputs(count, fail_share), queue, eager=True
        )
        cpu, server_cpu = cpu_seconds(me) - cpu0, cpu_seconds(server.pid) - server0
    result = Result(
        name, count, seconds, latencies, cpu, memory_kib(me, "VmHWM"), server_cpu, unexpected
    )
    result.notes.append("worker in the starting process: its CPU includes the client's")
    return result


async def memory_scenario(client: Client, server: DevServer, count: int, wait: int) -> list[str]:
    """``count`` sagas open at once on one worker, waiting on a timer; then they all finish.

    Outcomes are counted through visibility, not ``count`` long polls.
    """
    workers = Workers(server.address, 1)
    pid = workers.pids[0]
    lines: list[str] = []
    try:
        idle = memory_kib(pid, "VmRSS")
        gate = asyncio.Semaphore(100)
        begin = time.perf_counter()
        tag = uuid.uuid4().hex[:8]

        async def start(i: int) -> None:
            async with gate:
                await client.start_workflow(
                    "BenchWaitSaga",
                    BenchInput(id=f"{tag}-{i}", wait_seconds=wait),
                    id=f"BenchWaitSaga-{tag}-{i}",
                    task_queue=workers.queue,
                )

        await asyncio.gather(*(start(i) for i in range(count)))
        started = time.perf_counter() - begin
        query = f'WorkflowType = "BenchWaitSaga" AND TaskQueue = "{workers.queue}"'
        await asyncio.sleep(10)
        open_now = (await client.count_workflows(query + ' AND ExecutionStatus = "Running"')).count
        open_rss = memory_kib(pid, "VmRSS")
        deadline = time.monotonic() + wait + 1800
        while time.monotonic() < deadline:
            await asyncio.sleep(5)
            running = await client.count_workflows(query + ' AND ExecutionStatus = "Running"')
            if running.count == 0:
                break
        done = (await client.count_workflows(query + ' AND ExecutionStatus = "Completed"')).count
        peak = memory_kib(pid, "VmHWM")
        finished = time.perf_counter() - begin
        lines += [
            f"- {count} sagas started in {started:.0f} s ({count / started:.0f}/s), each first "
            f"waiting {wait} s on a timer; {open_now} were open at once, 10 s after the last "
            "start, on one worker with the default sticky cache (`max_cached_workflows=1000`).",
            f"- worker RSS: {idle / 1024:.0f} MiB idle, {open_rss / 1024:.0f} MiB with them all "
            f"open, peak {peak / 1024:.0f} MiB over the whole run.",
            f"- {done}/{count} completed (counted in visibility) {finished:.0f} s after the "
            "first start.",
        ]
    finally:
        workers.stop()
    return lines


def table(results: Sequence[Result], base: Result) -> list[str]:
    """Markdown rows; the ratios are against ``base`` (the table's first row)."""
    rows = [
        "| variant | sagas/s | p50 ms | p95 ms | p99 ms | worker CPU ms/saga | client CPU ms/saga"
        " | peak worker RSS MiB | server CPU ms/saga | server busy (cores) | throughput ratio"
        " | worker CPU/saga ratio |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        rows.append(
            f"| {r.name} | {r.rate:.1f} | {r.pct(0.5):.0f} | {r.pct(0.95):.0f} | {r.pct(0.99):.0f}"
            f" | {1000 * r.worker_cpu / r.sagas:.1f} | {1000 * r.client_cpu / r.sagas:.1f}"
            f" | {r.worker_rss_kib / 1024:.0f}"
            f" | {1000 * r.server_cpu / r.sagas:.1f} | {r.server_cpu / r.seconds:.2f}"
            f" | {r.rate / base.rate:.2f}"
            f" | {(r.worker_cpu / r.sagas) / (base.worker_cpu / base.sagas):.2f} |"
        )
    return rows
