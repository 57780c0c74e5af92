"""``python -m bench.payloads``: what a saga costs with its payloads stored, against history.

One tuned dev server and one NATS JetStream server, started here. The saga (``bench/_docs.py``)
takes a document through three in-memory steps, the last returning it whole, so the document
crosses history about five times (input, three step arguments, an output, the report). Printed:

1. **under the threshold** (1 kB documents): sagas per second with the payload store off and on,
   side by side in alternating rounds on the same servers, and the ratio (the goal: ≥ 0.98,
   nothing stored, no store call);
2. **over it** (256 kB to 16 MB documents, the store on): seconds per saga, history bytes and
   store bytes per saga — history stays the same size whatever the document's size.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import nats
from temporalio.client import Client
from temporalio.worker import Worker

from bench._docs import DOC, DocBenchSaga, digest, file, stamp
from sagaloom import SagaStatus
from sagaloom.client import connect, outcome, start_saga
from sagaloom.participants import Breakers
from sagaloom.server import (
    DevServer,
    DevServerOptions,
    NatsServer,
    NatsServerOptions,
    free_port,
)
from sagaloom.storage import DEFAULT_BUCKET, PayloadStore
from sagaloom.worker import SagaloomPlugin, configure_logging


def _document(size: int) -> str:
    seed = uuid.uuid4().hex
    return (seed * (size // len(seed) + 1))[:size]


async def _batch(client: Client, queue: str, count: int, size: int) -> float:
    """Run ``count`` sagas at once with ``size``-byte documents; return sagas per second."""
    began = time.perf_counter()
    handles = [
        await start_saga(
            client, DOC, {"id": f"{queue}-{uuid.uuid4().hex}", "body": _document(size)},
            task_queue=queue,
        )
        for _ in range(count)
    ]  # fmt: skip
    results = await asyncio.gather(*(outcome(h) for h in handles))
    assert all(r.status is SagaStatus.COMPLETED for r in results), results
    return count / (time.perf_counter() - began)


async def _store_bytes(url: str) -> int:
    nc = await nats.connect(url)
    try:
        store = await nc.jetstream().object_store(DEFAULT_BUCKET)
        return sum(info.size or 0 for info in await store.list(ignore_deletes=True))
    except Exception:
        return 0
    finally:
        await nc.close()


async def run(address: str, nats_url: str, rounds: int, count: int, sizes: list[int]) -> None:
    """Both tables, on the servers at ``address`` and ``nats_url``."""
    configure_logging("ERROR")
    plugin = SagaloomPlugin(services={}, breakers=Breakers(None))
    off = await connect(address, payloads=PayloadStore("off"))
    on = await connect(address, payloads=PayloadStore("nats", nats_url))
    activities = [digest, file, stamp]
    async with (
        Worker(off, task_queue="off", workflows=[DocBenchSaga], activities=activities,
               plugins=[plugin]),
        Worker(on, task_queue="on", workflows=[DocBenchSaga], activities=activities,
               plugins=[plugin]),
    ):  # fmt: skip
        await _batch(off, "off", 10, 1000)  # warm both
        await _batch(on, "on", 10, 1000)
        rates: dict[str, list[float]] = {"off": [], "on": []}
        for n in range(rounds):
            order = ("off", "on") if n % 2 == 0 else ("on", "off")
            for name in order:
                client = off if name == "off" else on
                rates[name].append(await _batch(client, name, count, 1000))
        med = {k: statistics.median(v) for k, v in rates.items()}
        print("\n1. under the threshold: 1 kB documents, "
              f"{count} sagas at once, {rounds} alternating rounds (medians)\n")  # fmt: skip
        print("| payload store | sagas/s | ratio to off |\n|---|---|---|")
        for name in ("off", "on"):
            print(f"| {name} | {med[name]:.1f} | {med[name] / med['off']:.3f} |")
        print(f"\n(stored while under the threshold: {await _store_bytes(nats_url):,} bytes)")

        print("\n2. over the threshold, the store on (NATS object store): one saga at a time\n")
        print("| document | s per saga | history bytes | store bytes (new) |\n|---|---|---|---|")
        for size in sizes:
            before = await _store_bytes(nats_url)
            began = time.perf_counter()
            handle = await start_saga(
                on, DOC, {"id": f"big-{size}-{uuid.uuid4().hex}", "body": _document(size)},
                task_queue="on",
            )  # fmt: skip
            result = await outcome(handle)
            seconds = time.perf_counter() - began
            assert result.status is SagaStatus.COMPLETED
            history = sum(e.ByteSize() for e in (await handle.fetch_history()).events)
            stored = await _store_bytes(nats_url) - before
            print(f"| {size / 1e6:g} MB | {seconds:.2f} | {history:,} | {stored:,} |")
        small = await start_saga(off, DOC, {"id": f"small-{uuid.uuid4().hex}",
                                            "body": _document(1000)}, task_queue="off")  # fmt: skip
        await outcome(small)
        history = sum(e.ByteSize() for e in (await small.fetch_history()).events)
        print(f"| 0.001 MB, store off | - | {history:,} | 0 |")


def main() -> None:
    """Start the servers, run, print the tables."""
    parser = argparse.ArgumentParser(prog="python -m bench.payloads", description=__doc__)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--sizes", default="262144,1000000,4000000,16000000")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "t.sqlite3"
        server = DevServer(DevServerOptions(port=free_port(), ui_port=None, db_file=db, tuned=True))
        broker = NatsServer(NatsServerOptions.in_folder(Path(tmp)))
        asyncio.run(server.start())
        asyncio.run(broker.start())
        try:
            sizes = [int(s) for s in args.sizes.split(",")]
            asyncio.run(run(server.address, broker.url, args.rounds, args.count, sizes))
        finally:
            broker.stop()
            server.stop()


if __name__ == "__main__":
    main()
