"""``python -m bench.exclusive``: what exclusive keys cost, side by side in one run.

On a fresh tuned dev server per round (variants in rotated order), an in-process worker runs
the benchmark's 4-step saga (``bench._sagas``) three ways, every saga started at once:

* **plain**: no exclusive keys (``BenchLeanSaga``, the default saga);
* **disjoint keys**: ``exclusive=`` with a key of its own per saga — nobody waits, so this is
  the price of taking and releasing a key (two local activities: an Update to the key's shard,
  a signal);
* **one hot key**: every saga the same key — they run one at a time: the serial limit.

With ``--http``, also the same saga whose steps call a participant over HTTP (an echo server on
loopback, in this process), plain and with disjoint keys: what the keys cost when a step does
some work, as a saga's steps do.

Printed: sagas/s (median of the rounds) and its ratio to plain, the CPU per saga of this process
(client and worker) and of the Temporal server, and the history events per saga of the saga
itself and of the key shards (the events they added, divided by the sagas).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from temporalio.client import Client
from temporalio.worker import Worker

from bench._echo import EchoHttp
from bench._models import BenchInput
from bench._processes import cpu_seconds
from bench._sagas import (
    ACTIVITIES,
    BENCH_DISJOINT,
    BENCH_HOT,
    BENCH_HTTP,
    BENCH_HTTP_DISJOINT,
    BENCH_LEAN,
    TRANSPORT_WORKFLOWS,
    WORKFLOWS,
)
from sagaloom import Saga
from sagaloom.client import connect, outcome, start_saga
from sagaloom.participants import Breakers
from sagaloom.server import DevServer, DevServerOptions, free_port
from sagaloom.worker import SagaloomPlugin, configure_logging

VARIANTS: dict[str, Saga[BenchInput]] = {
    "plain": BENCH_LEAN,
    "disjoint keys": BENCH_DISJOINT,
    "one hot key": BENCH_HOT,
}
HTTP_VARIANTS: dict[str, Saga[BenchInput]] = {
    "HTTP steps, plain": BENCH_HTTP,
    "HTTP steps, disjoint keys": BENCH_HTTP_DISJOINT,
}


Figures = tuple[float, float, float, float, float]
"""sagas/s, history events per saga, lock events per saga, process and server CPU ms per saga."""


async def measure(
    client: Client, saga: Saga[BenchInput], count: int, server_pid: int, echo: str | None
) -> Figures:
    """The :data:`Figures` of ``count`` sagas started at once (``echo``: the HTTP participant)."""
    queue = f"bench-x-{uuid.uuid4().hex[:6]}"
    shard_events_before = await shard_events(client)
    plugin = SagaloomPlugin(services={"echo": echo} if echo else {}, breakers=Breakers(None))
    workflows = WORKFLOWS + (TRANSPORT_WORKFLOWS if echo else [])
    async with Worker(client, task_queue=queue, workflows=workflows, activities=ACTIVITIES,
                      plugins=[plugin], max_concurrent_workflow_tasks=100):  # fmt: skip
        run = uuid.uuid4().hex[:6]
        began, cpu0 = time.perf_counter(), cpu_seconds(os.getpid())
        server0 = cpu_seconds(server_pid)
        handles = await asyncio.gather(*(
            start_saga(client, saga, BenchInput(id=f"{run}-{i}", fail_at=4 if i % 10 == 9 else 0),
                       task_queue=queue) for i in range(count)))  # fmt: skip
        await asyncio.gather(*(outcome(h) for h in handles))
        rate = count / (time.perf_counter() - began)
        cpu = 1000 * (cpu_seconds(os.getpid()) - cpu0) / count
        server_cpu = 1000 * (cpu_seconds(server_pid) - server0) / count
    sample = handles[:: max(1, count // 20)]
    events = statistics.mean([len((await h.fetch_history()).events) for h in sample])
    shard = (await shard_events(client) - shard_events_before) / count
    return rate, events, shard, cpu, server_cpu


async def shard_events(client: Client) -> int:
    """History events of every key shard run so far (all runs, open and closed)."""
    total = 0
    async for run in client.list_workflows('WorkflowType = "SagaloomKeyShard"'):
        handle = client.get_workflow_handle(run.id, run_id=run.run_id)
        total += len((await handle.fetch_history()).events)
    return total


async def main() -> None:
    """Run the rounds and print the table."""
    parser = argparse.ArgumentParser(prog="python -m bench.exclusive", description=__doc__)
    parser.add_argument("--sagas", type=int, default=200)
    parser.add_argument("--hot-sagas", type=int, default=50, help="fewer: they run one by one")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--http", action="store_true", help="also the saga over HTTP steps")
    args = parser.parse_args()
    configure_logging("ERROR")  # expected step failures are part of the load
    variants = VARIANTS | (HTTP_VARIANTS if args.http else {})
    results: dict[str, list[Figures]] = {name: [] for name in variants}
    names = list(variants)
    echo = EchoHttp() if args.http else None
    with tempfile.TemporaryDirectory() as tmp:
        for round_ in range(args.rounds):
            db = Path(tmp) / f"t{round_}.sqlite3"
            options = DevServerOptions(port=free_port(), ui_port=None, db_file=db, tuned=True)
            server = DevServer(options)
            await server.start()
            try:
                client = await connect(server.address)
                order = names[round_ % len(names) :] + names[: round_ % len(names)]
                for name in order:
                    count = args.hot_sagas if name == "one hot key" else args.sagas
                    figures = await measure(client, variants[name], count, server.pid,
                                            echo.url if echo else None)  # fmt: skip
                    results[name].append(figures)
                    print(f"round {round_ + 1} {name}: {results[name][-1][0]:.1f} sagas/s",
                          flush=True)  # fmt: skip
            finally:
                server.stop()
    if echo:
        echo.close()
    print(f"\n| variant | sagas/s (median of {args.rounds}) | x plain (median of the rounds' "
          "ratios) | saga history events | "
          "key-shard events per saga | process CPU ms/saga | server CPU ms/saga |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for name, runs in results.items():
        plain = results["HTTP steps, plain" if name.startswith("HTTP") else "plain"]
        ratio = statistics.median(r[0] / p[0] for r, p in zip(runs, plain, strict=True))
        rate = statistics.median(r[0] for r in runs)
        events = statistics.median(r[1] for r in runs)
        locks = statistics.median(r[2] for r in runs)
        cpu = statistics.median(r[3] for r in runs)
        server_cpu = statistics.median(r[4] for r in runs)
        print(f"| {name} | {rate:.1f} | {ratio:.2f} | {events:.0f} | {locks:.1f} "
              f"| {cpu:.1f} | {server_cpu:.1f} |")  # fmt: skip


if __name__ == "__main__":
    asyncio.run(main())
