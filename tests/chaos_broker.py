"""Chaos for event-driven sagas: SIGKILL the broker and the workers while fulfilments run.

``python -m tests.chaos_broker --sagas 200 --broker-kills 4 --worker-kills 6`` (the test suite
runs a small one; ``--documents-every 3`` gives every third saga a packing list over the payload
store's threshold and the broker's message limit, so SIGKILLs land on store writes too). Starts
its own dev server, ``nats-server -js`` (restarted on its store after
each SIGKILL), the inventory participant (HTTP) and the warehouse (NATS), and two ``saga worker``
processes (restarted after each SIGKILL). Then checks the invariants of the HTTP chaos run, for
the broker: nothing lost (every saga ended as its input says), nothing half-done (each store
agrees with the outcome), each effect once per key, and each lifecycle event stored once; and
each document reached the warehouse whole.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import nats

from sagaloom import SagaStatus
from sagaloom.client import connect, outcome, start_saga
from sagaloom.participants import EVENTS_STREAM
from sagaloom.server import DevServer, DevServerOptions, NatsServer, NatsServerOptions
from sagaloom.storage import DEFAULT_BUCKET, PayloadStore, PayloadStoreUnavailable
from services import serve
from workflows.fulfilment import FULFILMENT

ROOT = Path(__file__).resolve().parent.parent
SECRET = "chaos-broker-secret"


@dataclass
class Report:
    """What happened, and what was wrong."""

    sagas: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    broker_kills: int = 0
    worker_kills: int = 0
    events: int = 0
    poison: int = 0
    """Poison replies published during the window (non-ASCII or forged tokens, not JSON…)."""
    stalled: int = 0
    """Reply messages still unacknowledged or undelivered once everything settled."""
    documents: int = 0
    """Sagas that carried a packing list through the payload store."""
    stored: int = 0
    """Objects in the payload store's bucket at the end."""
    start_retries: int = 0
    """Starts retried because the store was down at that moment (the broker being killed)."""
    violations: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def lines(self) -> list[str]:
        """A summary for docs/chaos.md."""
        return [
            f"- {self.sagas} fulfilment sagas started steadily over the chaos window (HTTP "
            "inventory + NATS warehouse, lifecycle events on): "
            + ", ".join(f"{n} {k.lower()}" for k, n in sorted(self.outcomes.items())),
            f"- {self.broker_kills} SIGKILLs of nats-server (restarted on its store), "
            f"{self.worker_kills} worker SIGKILLs (restarted)",
            f"- {self.events} lifecycle events read back, each stored once",
            f"- {self.documents} sagas carried a packing list through the payload store "
            f"({self.stored} objects stored; {self.start_retries} starts retried while the "
            "store was down), each received whole by the warehouse",
            f"- {self.poison} poison replies injected through the window (non-ASCII and forged "
            f"tokens, bodies that are not JSON, unknown sagas): {self.stalled} left stalled in "
            "the reply consumer",
            f"- {len(self.violations)} violations; the last saga settled {self.seconds:.0f} s "
            "after the last fault and the last start",
        ]


def worker(
    folder: Path, address: str, nats_url: str, inventory: str, queue: str, n: int
) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SAGALOOM_")}
    env.update(
        TEMPORAL_ADDRESS=address,
        SAGALOOM_TASK_QUEUE=queue,
        SAGALOOM_SAGA_MODULES="workflows.fulfilment",
        SAGALOOM_NATS_URL=nats_url,
        SAGALOOM_SERVICE_INVENTORY=inventory,
        SAGALOOM_REPLY_SECRET=SECRET,
        SAGALOOM_GRACEFUL_SHUTDOWN_SECONDS="2",
    )
    log = open(folder / f"worker-{n}.log", "ab")  # noqa: SIM115
    return subprocess.Popen(
        [sys.executable, "-m", "sagaloom", "worker"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=ROOT,
    )


POISON = (
    b'{"correlation_id": "FulfilmentSaga-x:pack", "token": "t\xc3\xb6k\xc3\xa9n", "ok": true}',
    b"{not json",
    b'{"correlation_id": "FulfilmentSaga-x:pack", "token": "forged", "ok": true}',
    b'{"correlation_id": "\\ud800", "token": "\\ud800", "ok": true}',
    b"[" * 5000 + b"]" * 5000,
)
"""Replies anyone with publish permission can send: each must end as a dead letter."""


async def inject_poison(url: str, stop: asyncio.Event, report: Report, rng: random.Random) -> None:
    """Publish poison replies through the chaos window (through broker kills, reconnecting)."""

    async def quiet(err: Exception) -> None:  # the broker is killed on purpose
        pass

    nc = await nats.connect(url, max_reconnect_attempts=-1, reconnect_time_wait=0.3, error_cb=quiet)
    try:
        while not stop.is_set():
            try:
                await nc.publish("sagaloom.replies", rng.choice(POISON))
                report.poison += 1
            except Exception:  # the broker is down: the next one after a pause
                await asyncio.sleep(0.3)
            await asyncio.sleep(0.02)
    finally:
        await nc.close()


async def run(
    sagas: int,
    broker_kills: int,
    worker_kills: int,
    chaos_seconds: float,
    seed: int,
    settle_seconds: float = 600,
    documents_every: int = 0,
    document_bytes: int = 1_500_000,
) -> Report:
    rng = random.Random(seed)
    report = Report(sagas=sagas)
    folder = Path(tempfile.mkdtemp(prefix="chaos-broker-"))
    server = DevServer(DevServerOptions.in_folder(folder, ui=False))
    await server.start()
    options = NatsServerOptions.in_folder(folder)
    broker = NatsServer(options)
    await broker.start()
    services = serve(folder / "svc", nats_url=broker.url)
    inventory = services.urls["inventory"]
    queue = f"chaos-broker-{os.urandom(3).hex()}"
    workers = [worker(folder, server.address, broker.url, inventory, queue, i) for i in range(2)]
    began = time.monotonic()
    try:
        client = await connect(server.address, payloads=PayloadStore("nats", broker.url))
        keys = [f"cb-{os.urandom(3).hex()}-{i}" for i in range(sagas)]
        refused = {k for k in keys if rng.random() < 0.2}
        documents = {k for i, k in enumerate(keys) if documents_every and i % documents_every == 0}
        report.documents = len(documents)
        handles: list[Any] = []

        async def start_one(data: dict[str, Any]) -> Any:
            while True:  # as a caller would: the store was down for a moment, start again
                try:
                    return await start_saga(client, FULFILMENT, data, task_queue=queue)
                except PayloadStoreUnavailable:
                    report.start_retries += 1
                    await asyncio.sleep(0.5)

        async def arrivals() -> None:
            # spread over the chaos window, so kills land on sagas in every phase
            for i, k in enumerate(keys):
                await asyncio.sleep(max(0.0, began + i * chaos_seconds / sagas - time.monotonic()))
                data = {"order_id": k, "sku": "gadget", "quantity": 80 if k in refused else 2}
                if k in documents:
                    data["packing_list"] = packing_list(k, document_bytes)
                handles.append(await start_one(data))

        starting = asyncio.create_task(arrivals())
        stop_poison = asyncio.Event()
        poison = asyncio.create_task(inject_poison(broker.url, stop_poison, report, rng))
        kills = sorted(
            [(rng.uniform(1, chaos_seconds), "broker") for _ in range(broker_kills)]
            + [(rng.uniform(1, chaos_seconds), "worker") for _ in range(worker_kills)]
        )
        start = time.monotonic()
        for at, what in kills:
            await asyncio.sleep(max(0.0, start + at - time.monotonic()))
            if what == "broker":
                os.kill(broker.pid, signal.SIGKILL)
                broker._process.wait()
                await asyncio.sleep(rng.uniform(0.5, 3))
                broker = NatsServer(options)
                await broker.start()
                report.broker_kills += 1
            else:
                i = rng.randrange(len(workers))
                workers[i].kill()
                workers[i].wait()
                workers[i] = worker(
                    folder, server.address, broker.url, inventory, queue, 10 + report.worker_kills
                )
                report.worker_kills += 1
        await starting
        stop_poison.set()
        await poison
        last_fault = time.monotonic()
        tasks = [asyncio.ensure_future(outcome(h)) for h in handles]
        _, stuck = await asyncio.wait(tasks, timeout=settle_seconds)
        for task, handle in zip(tasks, handles, strict=True):
            if task in stuck:  # named, never waited for forever
                task.cancel()
                report.violations.append(f"never settled: workflow {handle.id}")
        report.seconds = time.monotonic() - last_fault
        ended = [t.result() if t not in stuck else None for t in tasks]
        for key, result in zip(keys, ended, strict=True):
            if result is None:
                continue
            report.outcomes[result.status.value] += 1
            want = SagaStatus.COMPENSATED if key in refused else SagaStatus.COMPLETED
            if result.status is not want:
                report.violations.append(f"{key}: {result.status.value}, expected {want.value}")
            elif key in documents and want is SagaStatus.COMPLETED:
                packed = (result.report.outputs.get("pack") or {}) if result.report else {}
                if packed.get("packing_list_bytes") != document_bytes:
                    report.violations.append(f"{key}: the warehouse got {packed} of the document")
        report.violations += check_stores(services, keys, refused)
        report.stalled = await stalled_replies(broker.url)
        if report.stalled:
            report.violations.append(f"{report.stalled} reply messages stalled in the consumer")
        report.events, problems = await check_events(broker.url, [h.id for h in handles])
        report.violations += problems
        report.stored = await stored_objects(broker.url)
    finally:
        for process in workers:
            process.terminate()
        for process in workers:
            process.wait(30)
        services.close()
        broker.stop()
        server.stop()
    return report


def packing_list(key: str, size: int) -> str:
    """A document of ``size`` bytes, its own per saga."""
    return (f"{key}: gadget, boxed; " * (size // 20 + 1))[:size]


async def stored_objects(url: str) -> int:
    """Objects in the payload store's bucket (0 when it was never made)."""
    nc = await nats.connect(url)
    try:
        store = await nc.jetstream().object_store(DEFAULT_BUCKET)
        return len(await store.list(ignore_deletes=True))
    except Exception:  # no bucket: nothing was stored
        return 0
    finally:
        await nc.close()


async def stalled_replies(url: str, within: float = 30) -> int:
    """Replies neither taken nor dead-lettered once the poison stopped (0 when none stalls)."""
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        deadline = time.monotonic() + within
        while True:
            info = await js.consumer_info("SAGALOOM_REPLIES", "sagaloom-replies")
            left = (info.num_ack_pending or 0) + (info.num_pending or 0)
            if left == 0 or time.monotonic() > deadline:
                return left
            await asyncio.sleep(0.5)
    finally:
        await nc.close()


def check_stores(services: Any, keys: list[str], refused: set[str]) -> list[str]:
    """Each participant holds what the outcome says, each effect applied at most once."""
    problems = []
    warehouse = services.warehouse.store.dump()
    inventory = httpx.get(f"{services.urls['inventory']}/_admin/state", timeout=10).json()
    for name, state in (("inventory", inventory), ("warehouse", warehouse)):
        applied = Counter(e["key"] for e in state["log"] if e["op"] == "do")
        records = {r["key"]: r for r in state["records"]}
        for key in keys:
            if applied[key] > 1:
                problems.append(f"{key}: {name} applied the effect {applied[key]} times")
            record = records.get(key)
            active = (
                record is not None
                and record["status"] == "active"
                and record["payload"] is not None
            )
            if key in refused and active:
                problems.append(f"{key}: {name} still holds an effect of a compensated saga")
            if key not in refused and not active:
                problems.append(f"{key}: {name} lacks the effect of a completed saga")
    return problems


async def check_events(url: str, ids: list[str]) -> tuple[int, list[str]]:
    """Every saga's events: stored once each, starting with started, ending with its outcome."""
    nc = await nats.connect(url)
    js = nc.jetstream()
    info = await js.stream_info(EVENTS_STREAM)
    seen: Counter[str] = Counter()
    by_saga: dict[str, list[dict[str, Any]]] = {}
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        raw = await js.get_msg(EVENTS_STREAM, seq)
        event = json.loads(raw.data or b"{}")
        seen[event["id"]] += 1
        by_saga.setdefault(event["subject"], []).append(event)
    await nc.close()
    problems = [f"event {i} stored {n} times" for i, n in seen.items() if n > 1]
    for wid in ids:
        types = [e["type"] for e in by_saga.get(wid, [])]
        if (
            not types
            or types[0] != "io.sagaloom.saga.started"
            or types[-1]
            not in (
                "io.sagaloom.saga.completed",
                "io.sagaloom.saga.compensated",
            )
        ):
            problems.append(f"{wid}: events {types}")
    return sum(seen.values()), problems


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.chaos_broker", description=__doc__)
    parser.add_argument("--sagas", type=int, default=200)
    parser.add_argument("--broker-kills", type=int, default=4)
    parser.add_argument("--worker-kills", type=int, default=6)
    parser.add_argument("--chaos-seconds", type=float, default=40)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--documents-every", type=int, default=3, help="every Nth saga carries a document (0: none)"
    )
    parser.add_argument("--document-bytes", type=int, default=1_500_000)
    parser.add_argument(
        "--settle-seconds", type=float, default=600, help="after the window; then named as stuck"
    )
    args = parser.parse_args()
    report = asyncio.run(
        run(
            args.sagas,
            args.broker_kills,
            args.worker_kills,
            args.chaos_seconds,
            args.seed,
            args.settle_seconds,
            args.documents_every,
            args.document_bytes,
        )
    )
    print("\n".join(report.lines()))
    for violation in report.violations[:50]:
        print("VIOLATION", violation)
    sys.exit(1 if report.violations else 0)


if __name__ == "__main__":
    main()
