"""The chaos harness: many sagas while workers are killed, the server restarts and participants
misbehave; then the participants' own stores are checked.

``tests/test_chaos.py`` runs it with about 100 sagas; run it by hand for a longer report:
``python -m tests.chaos --sagas 500 --report docs/chaos.md``.

Faults at the participants (seeded, per call): 5xx, a response slower than the step's timeout,
and "commit, then drop the connection". Harness faults: SIGKILL a random worker process every
few seconds (then start a new one), and restart the Temporal dev server once, keeping its
SQLite file. Invariants, from the participants' stores when everything settles: every saga is
fully done or fully compensated (or parked with its state recorded); no effect is applied twice
for one idempotency key; no saga is lost.
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from temporalio.client import Client, WorkflowHandle
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError

from sagaloom import SagaState, SagaStatus
from sagaloom.client import Outcome, connect, outcome, start_saga
from sagaloom.server import DevServer, DevServerOptions, free_port
from tests._sagas import CHAOS_ORDER

ROOT = Path(__file__).resolve().parent.parent
QUEUE = "chaos"
SERVICES = ("inventory", "payment", "shipping")
PARTICIPANT_FAULTS = [
    {"op": "do", "match": "*", "mode": "error", "status": 503, "rate": 0.10},
    {"op": "do", "match": "*", "mode": "slow", "delay": 3.0, "rate": 0.03},
    {"op": "do", "match": "*", "mode": "drop", "rate": 0.05},
    {"op": "undo", "match": "*", "mode": "error", "status": 502, "rate": 0.10},
    {"op": "undo", "match": "*", "mode": "drop", "rate": 0.05},
]


@dataclass
class ChaosReport:
    """What happened and what was checked."""

    sagas: int = 0
    completed: int = 0
    compensated: int = 0
    parked: int = 0
    lost: int = 0
    kills: int = 0
    server_restarts: int = 0
    faults: dict[str, int] = field(default_factory=dict)
    retries: int = 0
    seconds: float = 0.0
    violations: list[str] = field(default_factory=list)
    """Broken guarantees: a store half-done, an effect applied twice, a saga lost."""
    unexpected: list[str] = field(default_factory=list)
    """Sagas that ended otherwise than their plan, consistently (for example a step that ran
    out of its time budget under the chaos and was compensated): allowed, but counted."""

    def markdown(self) -> str:
        """The report as a markdown section."""
        faults = ", ".join(f"{k} {v}" for k, v in sorted(self.faults.items())) or "none"
        lines = [
            f"- sagas: {self.sagas} ({self.completed} completed, {self.compensated} compensated, "
            f"{self.parked} parked, {self.lost} lost) in {self.seconds:.0f} s",
            f"- worker processes SIGKILLed and restarted: {self.kills}",
            f"- Temporal dev server restarts (SQLite kept): {self.server_restarts}",
            f"- faults injected by the participants: {faults}",
            f"- retries seen (attempts beyond the first, from the sagas' state): {self.retries}",
            f"- sagas that ended otherwise than planned, consistently (a step out of its time "
            f"budget under the chaos, then compensated): {len(self.unexpected)}",
            f"- violations (a store half-done, an effect applied twice, a saga lost): "
            f"{len(self.violations)}",
            *(f"  - {v}" for v in self.violations[:20]),
        ]
        return "\n".join(lines)


def expected(i: int) -> tuple[dict[str, Any], SagaStatus, str | None]:
    """The i-th saga's input tweaks and the outcome it must reach."""
    if i % 5 == 1:
        return {"amount_cents": 500_000}, SagaStatus.COMPENSATED, "charge-payment"
    if i % 10 == 3:
        return {"country": "AQ"}, SagaStatus.COMPENSATED, "create-shipment"
    return {}, SagaStatus.COMPLETED, None


class Harness:
    """The processes under test and the faults done to them."""

    def __init__(self, tmp: Path, seed: int) -> None:
        self.tmp = tmp
        self.rng = random.Random(seed)
        self.server = DevServer(
            DevServerOptions(
                port=free_port(),
                ui_port=None,
                db_file=tmp / "temporal.sqlite3",
                log_file=tmp / "temporal.log",
            )
        )
        self.urls: dict[str, str] = {}
        self.services: subprocess.Popen[bytes] | None = None
        self.workers: list[subprocess.Popen[bytes]] = []
        self.report = ChaosReport()

    def start_services(self) -> None:
        urls_file = self.tmp / "urls.json"
        self.services = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "services",
                "--data-dir",
                str(self.tmp / "svc"),
                "--urls-file",
                str(urls_file),
            ],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while not urls_file.exists():
            if time.monotonic() > deadline:
                raise RuntimeError("participants did not start")
            time.sleep(0.05)
        self.urls = json.loads(urls_file.read_text())

    def start_worker(self) -> subprocess.Popen[bytes]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SAGALOOM_")}
        env.update({f"SAGALOOM_SERVICE_{k.upper()}": v for k, v in self.urls.items()})
        env.update(
            TEMPORAL_ADDRESS=self.server.address,
            SAGALOOM_TASK_QUEUE=QUEUE,
            SAGALOOM_SAGA_MODULES="tests._sagas",
            SAGALOOM_GRACEFUL_SHUTDOWN_SECONDS="2",
            SAGALOOM_LOG_LEVEL="ERROR",
        )
        log = open(self.tmp / "workers.log", "ab")  # noqa: SIM115
        return subprocess.Popen(
            [sys.executable, "-m", "sagaloom", "worker"],
            env=env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    async def chaos(self, stop: asyncio.Event, kill_every: float, restart_after: float) -> None:
        """Kill a random worker every ``kill_every`` s; restart the server once."""
        begin = time.monotonic()
        restarted = False
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), kill_every)
                return
            except TimeoutError:
                pass
            index = self.rng.randrange(len(self.workers))
            self.workers[index].send_signal(signal.SIGKILL)
            await asyncio.to_thread(self.workers[index].wait)
            self.workers[index] = self.start_worker()
            self.report.kills += 1
            if not restarted and time.monotonic() - begin > restart_after:
                restarted = True
                await asyncio.to_thread(self.server.stop)
                await self.server.start()
                self.report.server_restarts += 1

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


async def start(client: Client, data: dict[str, Any]) -> WorkflowHandle[Any, Any]:
    """Start a saga, retrying through a server restart (a start that did land is kept)."""
    for _ in range(120):
        try:
            return await start_saga(client, CHAOS_ORDER, data, task_queue=QUEUE)
        except WorkflowAlreadyStartedError:
            return client.get_workflow_handle(f"{CHAOS_ORDER.name}-{data['order_id']}")
        except RPCError:
            await asyncio.sleep(0.5)
    raise RuntimeError(f"could not start saga {data['order_id']}")


async def settle(client: Client, handle: WorkflowHandle[Any, Any], within: float) -> Outcome | None:
    """The saga's outcome, retrying through server restarts; None if it never settles."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            return await asyncio.wait_for(outcome(handle), max(1.0, deadline - time.monotonic()))
        except (RPCError, RuntimeError, TimeoutError):
            await asyncio.sleep(1)
    return None


async def run_chaos(
    tmp: Path, sagas: int, *, seed: int = 7, kill_every: float = 3.0, within: float = 420
) -> ChaosReport:
    """Run the whole scenario and return its report."""
    harness = Harness(tmp, seed)
    report = harness.report
    report.sagas = sagas
    await harness.server.start()
    harness.start_services()
    try:
        async with httpx.AsyncClient() as http:
            for service in SERVICES:
                for n, fault in enumerate(PARTICIPANT_FAULTS):
                    await http.post(
                        f"{harness.urls[service]}/_admin/faults",
                        json={**fault, "seed": seed * 100 + n},
                    )
        harness.workers = [harness.start_worker() for _ in range(2)]
        client = await connect(harness.server.address)
        begin = time.monotonic()
        batch = os.urandom(3).hex()
        plans = [expected(i) for i in range(sagas)]
        stop = asyncio.Event()
        # The chaos starts with the first saga and lasts until the last one settles.
        chaos = asyncio.create_task(harness.chaos(stop, kill_every, restart_after=kill_every * 3))
        handles = []
        for i, (tweak, _, _) in enumerate(plans):
            data = {
                "order_id": f"{batch}-{i}",
                "customer": "chaos",
                "sku": "widget",
                "quantity": 1,
                "amount_cents": 1_000,
                "country": "NL",
                **tweak,
            }
            handles.append(await start(client, data))
        results = await asyncio.gather(*(settle(client, h, within) for h in handles))
        stop.set()
        await chaos
        report.seconds = time.monotonic() - begin
        await check(harness, client, handles, plans, results, batch)
    finally:
        harness.stop()
    return report


async def check(
    harness: Harness,
    client: Client,
    handles: list[WorkflowHandle[Any, Any]],
    plans: list[tuple[dict[str, Any], SagaStatus, str | None]],
    results: list[Outcome | None],
    batch: str,
) -> None:
    """Check every invariant from the participants' stores and the sagas' outcomes."""
    report = harness.report
    async with httpx.AsyncClient(timeout=30) as http:
        states = {s: (await http.get(f"{harness.urls[s]}/_admin/state")).json() for s in SERVICES}
    for state in states.values():
        for mode, count in state["injected"].items():
            report.faults[mode] = report.faults.get(mode, 0) + count
    for i, (handle, (_, want, failed_step), result) in enumerate(
        zip(handles, plans, results, strict=True)
    ):
        key = f"{batch}-{i}"
        held = {}
        for service, state in states.items():
            record = next((r for r in state["records"] if r["key"] == key), None)
            held[service] = (
                "absent" if record is None or record["payload"] is None else record["status"]
            )
            applied = [e for e in state["log"] if e["key"] == key and e["op"] == "do"]
            if len(applied) > 1:
                report.violations.append(f"{key}: {service} applied {len(applied)} times")
        if result is None:
            report.lost += 1
            report.violations.append(f"{key}: never settled ({held})")
            continue
        if result.status is SagaStatus.COMPLETED:
            report.completed += 1
            if set(held.values()) != {"active"}:
                report.violations.append(f"{key}: completed but stores hold {held}")
        elif result.status is SagaStatus.COMPENSATED:
            report.compensated += 1
            if "active" in held.values():
                report.violations.append(f"{key}: compensated but stores hold {held}")
        elif result.status is SagaStatus.NEEDS_ATTENTION:
            report.parked += 1
        else:
            report.violations.append(f"{key}: ended {result.status.value}: {result.error}")
        reported = result.report.failed_step if result.report else None
        if result.status is not want or reported != failed_step:
            report.unexpected.append(
                f"{key}: {result.status.value} at {reported}, expected "
                f"{want.value} at {failed_step}"
            )
        try:
            state = await handle.query("saga_state", result_type=SagaState)
            report.retries += sum(
                max(0, s.attempts - 1) + max(0, s.compensation_attempts - 1) for s in state.steps
            )
        except RPCError:
            pass


def main() -> None:
    """``python -m tests.chaos``: a longer run with a report."""
    parser = argparse.ArgumentParser(prog="python -m tests.chaos", description=__doc__)
    parser.add_argument("--sagas", type=int, default=500)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--kill-every", type=float, default=3.0)
    parser.add_argument("--report", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sagaloom-chaos-") as tmp:
        report = asyncio.run(
            run_chaos(
                Path(tmp), args.sagas, seed=args.seed, kill_every=args.kill_every, within=1800
            )
        )
    text = report.markdown()
    print(text)
    if args.report:
        args.report.write_text(
            "# Chaos run\n\nGenerated by `python -m tests.chaos "
            f"--sagas {args.sagas} --seed {args.seed} --kill-every {args.kill_every}` on "
            f"{time.strftime('%Y-%m-%d')}, "
            f"{os.cpu_count()} cores.\n\n{text}\n"
        )
    sys.exit(1 if report.violations else 0)


if __name__ == "__main__":
    main()
