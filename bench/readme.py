"""``python -m bench.readme``: the engine written the README's way against the raw SDK saga.

Issue #25's shape, side by side in one run: worker and client in one process, every saga
started at once, a fresh tuned dev server per round, variants in rotated order, medians. The
same 4-step saga (every 10th compensating) four ways:

* **raw SDK saga**: hand-written (``bench._raw``), its models passed through the sandbox as the
  SDK's samples do; a client with pydantic's converter and no plugin;
* **README's way**: ``Client.connect(..., plugins=[SagaloomPlugin()])``, a plain ``Worker`` and
  a module with one saga (``bench._user``): the worker checks its step builders once and
  passes the module through the sandbox (``sagaloom/worker/_purity.py``);
* **README's way, a module of ten sagas**: the same saga, the first of ten in its module
  (``bench._user_ten``), as a team groups sagas by domain;
* **re-imported per run (unchecked)**, alone and in the module of ten: the same two with the
  worker's once-per-worker check of the builders switched off, so the sandbox re-imports the
  module for every run (sagaloom before 0.2, and any module the check keeps sandboxed);
* **README's way, models passed through**: the same, with the module that holds the pydantic
  models and activities (``bench._models``) passed through; the saga module and its step
  builders stay sandboxed (their clock and random checks hold, ``tests/runtime/test_sandbox.py``);
* **everything passed through**: ``bench`` passed through whole (what ``python -m bench`` does;
  the sandbox no longer checks the step builders);
* **README's way, fast path**: a one-saga module whose saga has ``local_activities=True``
  (``bench._user_fast``), started with ``request_eager_start=True``, nothing passed through;
* **the fast path, unsandboxed**: the same with no workflow sandbox at all (what
  ``SAGALOOM_SANDBOX=off`` does): the ceiling the sandbox's own machinery leaves.

Printed: sagas/s and its ratio to raw, and the benchmark process's CPU per saga (worker and
client; the server's is apart) and its ratio. With ``--open-seconds``, then an open loop: each
variant takes arrivals at half the raw saga's median capacity, each started on schedule
whatever the backlog, on a fresh server each; their start-to-result latency percentiles.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import UnsandboxedWorkflowRunner, Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from bench._inprocess import cpu_seconds, raw_one
from bench._models import BenchInput
from bench._sagas import ACTIVITIES, RawSaga
from bench._user import BENCH_USER, BenchUserSaga
from bench._user_fast import BENCH_USER_FAST, BenchUserFastSaga
from bench._user_ten import TEN as TEN_SAGAS
from bench._user_ten import TenSaga0
from sagaloom.client import outcome, start_saga
from sagaloom.participants import Breakers
from sagaloom.server import DevServer, DevServerOptions, free_port
from sagaloom.worker import SagaloomPlugin, _plugin, configure_logging

FAST = "README's way, fast path (local + eager)"
TEN = "README's way, a module of ten sagas"
REIMPORTED = "README's way, re-imported per run (unchecked)"
TEN_REIMPORTED = "a module of ten sagas, re-imported per run (unchecked)"
FAST_UNSANDBOXED = "the fast path, unsandboxed (SAGALOOM_SANDBOX=off)"
PASSED: dict[str, Sequence[str]] = {
    "README's way": (),
    TEN: (),
    REIMPORTED: (),
    TEN_REIMPORTED: (),
    "README's way, models passed through": ("bench._models",),
    "everything passed through": ("bench",),
    FAST: (),
    FAST_UNSANDBOXED: (),
}
VARIANTS = ["raw SDK saga", *PASSED]


async def _engine(client: Client, queue: str, data: BenchInput) -> bool:
    result = await outcome(await start_saga(client, BENCH_USER, data, task_queue=queue))
    return result.status.value == "COMPLETED"


async def _engine_ten(client: Client, queue: str, data: BenchInput) -> bool:
    result = await outcome(await start_saga(client, TEN_SAGAS[0], data, task_queue=queue))
    return result.status.value == "COMPLETED"


async def _engine_fast(client: Client, queue: str, data: BenchInput) -> bool:
    handle = await start_saga(
        client, BENCH_USER_FAST, data, task_queue=queue, request_eager_start=True
    )
    return (await outcome(handle)).status.value == "COMPLETED"


async def _setup(address: str, name: str, queue: str) -> tuple[Client, Any, Any]:
    """The client, the worker and the one-saga function of variant ``name``."""
    worker: Any
    if name == "raw SDK saga":
        client = await Client.connect(address, data_converter=pydantic_data_converter)
        worker, one = Worker(client, task_queue=queue, workflows=[RawSaga],
                             activities=ACTIVITIES), raw_one  # fmt: skip
    else:
        plugin = SagaloomPlugin(services={}, breakers=Breakers(None))
        client = await Client.connect(address, plugins=[plugin])
        options: dict[str, Any] = {}
        if PASSED[name]:
            restrictions = SandboxRestrictions.default.with_passthrough_modules(*PASSED[name])
            options["workflow_runner"] = SandboxedWorkflowRunner(restrictions=restrictions)
        if name == FAST_UNSANDBOXED:  # the ceiling: no sandbox at all, nothing checked
            options["workflow_runner"] = UnsandboxedWorkflowRunner()
        saga_class, one = {FAST: (BenchUserFastSaga, _engine_fast),
                           FAST_UNSANDBOXED: (BenchUserFastSaga, _engine_fast),
                           TEN: (TenSaga0, _engine_ten),
                           TEN_REIMPORTED: (TenSaga0, _engine_ten)}.get(
            name, (BenchUserSaga, _engine))  # fmt: skip
        checked = _plugin.passable_modules  # type: ignore[attr-defined]
        if name in (REIMPORTED, TEN_REIMPORTED):  # as before the once-per-worker check
            _plugin.passable_modules = lambda *_: []  # type: ignore[attr-defined]
        try:
            worker = Worker(client, task_queue=queue, workflows=[saga_class],
                            activities=ACTIVITIES, **options)  # fmt: skip
        finally:
            _plugin.passable_modules = checked  # type: ignore[attr-defined]
    return client, worker, one


async def measure(address: str, name: str, count: int) -> tuple[float, float]:
    """(sagas/s, CPU ms per saga) of variant ``name`` for ``count`` sagas started at once."""
    queue = f"readme-{uuid.uuid4().hex[:6]}"
    client, worker, one = await _setup(address, name, queue)
    async with worker:
        await asyncio.gather(*(one(client, queue, BenchInput(id=uuid.uuid4().hex[:12]))
                               for _ in range(10)))  # warm-up  # fmt: skip
        run = uuid.uuid4().hex[:6]
        inputs = [BenchInput(id=f"{run}-{i}", fail_at=4 if i % 10 == 9 else 0)
                  for i in range(count)]  # fmt: skip
        cpu, began = cpu_seconds(), time.perf_counter()
        await asyncio.gather(*(one(client, queue, data) for data in inputs))
        seconds, cpu = time.perf_counter() - began, cpu_seconds() - cpu
    return count / seconds, 1000 * cpu / count


async def open_loop(address: str, name: str, rate: float, seconds: float) -> list[float]:
    """Start-to-result latencies (ms) of sagas arriving at ``rate`` per second, on schedule."""
    queue = f"readme-open-{uuid.uuid4().hex[:6]}"
    client, worker, one = await _setup(address, name, queue)
    latencies: list[float] = []

    async def arrival(data: BenchInput) -> None:
        begin = time.perf_counter()
        await one(client, queue, data)
        latencies.append(1000 * (time.perf_counter() - begin))

    async with worker:
        await asyncio.gather(*(one(client, queue, BenchInput(id=uuid.uuid4().hex[:12]))
                               for _ in range(10)))  # warm-up  # fmt: skip
        run, begin, tasks = uuid.uuid4().hex[:6], time.perf_counter(), []
        for i in range(int(rate * seconds)):
            delay = begin + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            data = BenchInput(id=f"{run}-{i}", fail_at=4 if i % 10 == 9 else 0)
            tasks.append(asyncio.create_task(arrival(data)))
        await asyncio.gather(*tasks)
    return sorted(latencies)


async def main() -> None:
    """Run the rounds and print the table."""
    parser = argparse.ArgumentParser(prog="python -m bench.readme", description=__doc__)
    parser.add_argument("--sagas", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--open-seconds", type=float, default=0, help="then an open loop")
    parser.add_argument("--only", action="append", help="run only this variant (repeatable)")
    args = parser.parse_args()
    chosen = [name for name in VARIANTS if not args.only or name in args.only]
    configure_logging("ERROR")  # expected step failures are part of the load
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in chosen}
    with tempfile.TemporaryDirectory() as tmp:
        for round_ in range(args.rounds):
            db = Path(tmp) / f"r{round_}.sqlite3"
            server = DevServer(DevServerOptions(port=free_port(), ui_port=None, db_file=db,
                                                tuned=True))  # fmt: skip
            await server.start()
            try:
                shift = round_ % len(chosen)
                for name in chosen[shift:] + chosen[:shift]:
                    results[name].append(await measure(server.address, name, args.sagas))
                    rate, cpu = results[name][-1]
                    print(f"round {round_ + 1} {name}: {rate:.1f} sagas/s, {cpu:.1f} ms CPU/saga",
                          flush=True)  # fmt: skip
            finally:
                server.stop()
    base = results.get("raw SDK saga") or next(iter(results.values()))  # --only: the first
    base_rate = statistics.median(r[0] for r in base)
    base_cpu = statistics.median(r[1] for r in base)
    print(
        f"\n| variant | sagas/s (median of {args.rounds}) | x raw | x raw, rounds "
        "| CPU ms/saga | x raw | x raw, rounds |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, runs in results.items():
        rate = statistics.median(r[0] for r in runs)
        cpu = statistics.median(r[1] for r in runs)
        # each round's ratio to the raw saga of the same round (same server, same hour)
        rates = [r[0] / b[0] for r, b in zip(runs, base, strict=False)]
        cpus = [r[1] / b[1] for r, b in zip(runs, base, strict=False)]
        print(
            f"| {name} | {rate:.1f} | {rate / base_rate:.2f} | {_range(rates)} "
            f"| {cpu:.1f} | {cpu / base_cpu:.2f} | {_range(cpus)} |"
        )
    if args.open_seconds:
        await _open_loops(base_rate / 2, args.open_seconds)


def _range(values: Sequence[float]) -> str:
    return f"{min(values):.2f}-{max(values):.2f}" if values else "-"


async def _open_loops(rate: float, seconds: float) -> None:
    """Every variant at ``rate`` arrivals/s (half the raw saga's capacity), a fresh server each."""
    rows = []
    for name in VARIANTS:
        with tempfile.TemporaryDirectory() as tmp:
            db = Path(tmp) / "o.sqlite3"
            options = DevServerOptions(port=free_port(), ui_port=None, db_file=db, tuned=True)
            server = DevServer(options)
            await server.start()
            try:
                got = await open_loop(server.address, name, rate, seconds)
            finally:
                server.stop()
        p50, p95, p99 = (got[min(len(got) - 1, int(q * len(got)))] for q in (0.5, 0.95, 0.99))
        rows.append(f"| {name} | {rate:.1f} | {len(got)} | {p50:.0f} | {p95:.0f} | {p99:.0f} "
                    f"| {p99 / p50:.2f} |")  # fmt: skip
        print(f"[open loop] {rows[-1]}", flush=True)
    print("\n| variant | arrivals/s (50% of raw) | sagas | p50 ms | p95 ms | p99 ms | p99/p50 |")
    print("|---|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    asyncio.run(main())
