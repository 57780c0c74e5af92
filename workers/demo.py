"""The demo: example sagas that complete and compensate against the demo participant services.

``python -m workers.demo`` (``./run demo``) runs it unattended and checks that every
participant's store agrees with each saga's outcome; ``python -m workers.dev`` (``./run dev``)
keeps everything running for exploring the Web UI.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import httpx
from pydantic import SecretStr
from temporalio.client import Client

from activities.ledger import entries
from sagaloom import Command, Http, Saga, SagaState, SagaStatus
from sagaloom.client import (
    DEFAULT_UI,
    Outcome,
    connect,
    outcome,
    redrive,
    run,
    saga_events,
    start_saga,
    ui_link,
)
from sagaloom.participants import EVENTS_STREAM
from sagaloom.server import (
    DEFAULT_NATS_URL,
    DevServer,
    embedded_broker,
    embedded_server,
    free_port,
)
from sagaloom.storage import PayloadStore
from sagaloom.worker import WorkerConfig, configure_logging, run_worker
from services import RunningServices, serve
from workers.config import BROKER_SAGA_MODULES, SAGA_MODULES
from workflows.fulfilment import FULFILMENT
from workflows.guarded_order import GUARDED_ORDER
from workflows.itinerary import ITINERARY
from workflows.order import ORDER
from workflows.transfer import TRANSFER
from workflows.trip import TRIP

__all__ = [
    "SCENARIOS",
    "Checked",
    "Environment",
    "Scenario",
    "check_stores",
    "environment",
    "run_demo",
    "run_scenarios",
]


@dataclass(frozen=True)
class Scenario:
    """One demo saga and the outcome it must reach."""

    label: str
    """Suffix of the business key, saying what happens."""
    saga: Saga[Any]
    """Which saga."""
    data: Callable[[str], dict[str, Any]]
    """Input for a business key."""
    expect: SagaStatus
    """Expected final status."""
    failed_step: str | None = None
    """Expected failing step."""
    faults: tuple[tuple[str, dict[str, Any]], ...] = ()
    """Faults to inject first: ``(service, fault)``; the fault's ``match`` is set to the key."""
    fix_when_held: bool = False
    """An incident: once the saga holds at its failed step, the demo "deploys the fix" (clears
    the key's faults) and redrives it, as an operator would (``saga redrive``)."""


def _order(
    sku: str = "widget", amount: int = 2_500, country: str = "NL"
) -> Callable[[str], dict[str, Any]]:
    return lambda key: {
        "order_id": key,
        "customer": "ada",
        "sku": sku,
        "quantity": 2,
        "amount_cents": amount,
        "country": country,
    }


def _trip(destination: str = "Lisbon", cooling_off: int = 0) -> Callable[[str], dict[str, Any]]:
    return lambda key: {
        "trip_id": key,
        "traveller": "grace",
        "destination": destination,
        "nights": 3,
        "cooling_off_seconds": cooling_off,
    }


_LEGS = ("Lisbon", "Venice", "Berlin")


def _itinerary(amount: int = 90_000) -> Callable[[str], dict[str, Any]]:
    return lambda key: {
        "itinerary_id": key,
        "traveller": "ada",
        "legs": [{"leg_id": f"leg{n}", "destination": city} for n, city in enumerate(_LEGS)],
        "amount_cents": amount,
    }


def _fulfilment(quantity: int = 3, document_bytes: int = 0) -> Callable[[str], dict[str, Any]]:
    packing_list = ("gadget, boxed; " * (document_bytes // 15 + 1))[:document_bytes]
    return lambda key: {
        "order_id": key,
        "sku": "gadget",
        "quantity": quantity,
        "packing_list": packing_list,
    }


def _transfer(target: str) -> Callable[[str], dict[str, Any]]:
    return lambda key: {
        "transfer_id": key,
        "source": f"acc-{key}",
        "target": f"{target}-{key}",
        "amount_cents": 1_500,
    }


SCENARIOS: tuple[Scenario, ...] = (
    Scenario("ok", ORDER, _order(), SagaStatus.COMPLETED),
    Scenario("no-stock", ORDER, _order(sku="unobtainium"), SagaStatus.COMPENSATED, "reserve-stock"),
    Scenario("declined", ORDER, _order(amount=250_000), SagaStatus.COMPENSATED, "charge-payment"),
    Scenario("no-route", ORDER, _order(country="AQ"), SagaStatus.COMPENSATED, "create-shipment"),
    Scenario(
        "flaky-payment",
        ORDER,
        _order(),
        SagaStatus.COMPLETED,
        faults=(("payment", {"op": "do", "mode": "error", "status": 503, "times": 2}),),
    ),
    Scenario(
        "bad-deploy",
        GUARDED_ORDER,
        _order(),
        SagaStatus.COMPLETED,
        faults=(("payment", {"op": "do", "mode": "error", "status": 500}),),
        fix_when_held=True,
    ),
    Scenario("ok", TRIP, _trip(cooling_off=1), SagaStatus.COMPLETED),
    Scenario("venice", TRIP, _trip(destination="Venice"), SagaStatus.COMPENSATED, "book-car"),
    Scenario("ok", ITINERARY, _itinerary(), SagaStatus.COMPLETED),
    Scenario("declined", ITINERARY, _itinerary(250_000), SagaStatus.COMPENSATED, "charge"),
    Scenario("ok", TRANSFER, _transfer("acc-ada"), SagaStatus.COMPLETED),
    Scenario("frozen", TRANSFER, _transfer("frozen-bob"), SagaStatus.COMPENSATED, "credit"),
    Scenario("ok", FULFILMENT, _fulfilment(), SagaStatus.COMPLETED),
    Scenario("too-many", FULFILMENT, _fulfilment(80), SagaStatus.COMPENSATED, "pack"),
    Scenario(
        "large-document", FULFILMENT, _fulfilment(document_bytes=3_000_000), SagaStatus.COMPLETED
    ),
)
"""The demo batch: completions, a compensation at each order step, a retried 503, an order held
on a payment service answering 500 and redriven once fixed, two trips,
two itineraries (a fan-out over their legs), two transfers, and two fulfilments whose
warehouse answers over NATS, and one whose 3 MB packing list goes through the payload store."""


def expected_records(saga: Saga[Any], result: Outcome) -> dict[str, str]:
    """What each participant's store must hold for a saga's outcome.

    Returns:
        Service name to ``"active"`` (the effect stands), ``"undone"`` (applied, then
        compensated) or ``"absent"`` (never applied: no record, or a tombstone).
    """
    report = result.report
    done = set(report.outputs) if report else set()
    undone = {c.step for c in report.compensations if c.ok} if report else set()
    expected: dict[str, str] = {}
    for step in saga.steps:
        if isinstance(step.action, Http):
            service = step.action.service
        elif isinstance(step.action, Command):
            service = step.action.subject.split(".", 1)[0]  # warehouse.pack: the warehouse
        else:
            continue
        if step.name in undone and step.name in done:
            expected[service] = "undone"
        elif step.name in done and result.status is SagaStatus.COMPLETED:
            expected[service] = "active"
        else:
            expected[service] = "absent"
    return expected


async def check_stores(
    http: httpx.AsyncClient,
    urls: dict[str, str],
    saga: Saga[Any],
    key: str,
    result: Outcome,
    services: RunningServices | None = None,
) -> list[str]:
    """Compare the participants' stores with a saga's outcome.

    Returns:
        One message per disagreement (empty when the stores agree), including any effect
        applied more than once for the key.
    """
    problems: list[str] = []
    if saga is TRANSFER:
        return check_ledger(key, result)
    wanted = list(expected_records(saga, result).items())
    if saga is ITINERARY:  # a booking per leg (a car for each but Venice's); one payment
        done = result.status is SagaStatus.COMPLETED
        wanted = [("payment", "active" if done else "absent")]
        for n, city in enumerate(_LEGS):
            wanted.append((f"flights/{key}-leg{n}", "active" if done else "undone"))
            car = "absent" if city == "Venice" else ("active" if done else "undone")
            wanted.append((f"cars/{key}-leg{n}", car))
    for where, want in wanted:
        service, _, record_key = where.partition("/")
        record_key = record_key or key
        if service == "warehouse":  # over NATS: its store is read in-process
            assert services is not None and services.warehouse is not None
            state = services.warehouse.store.dump()
        else:
            state = (await http.get(f"{urls[service]}/_admin/state")).json()
        record = next((r for r in state["records"] if r["key"] == record_key), None)
        if record is None or record["payload"] is None:
            have = "absent"
        else:
            have = "active" if record["status"] == "active" else "undone"
        if have != want:
            problems.append(f"{record_key}: {service} holds {have}, expected {want}")
        applied = [e for e in state["log"] if e["key"] == record_key and e["op"] == "do"]
        if len(applied) > 1:
            problems.append(f"{record_key}: {service} applied the effect {len(applied)} times")
    return problems


def check_ledger(key: str, result: Outcome) -> list[str]:
    """Compare the ledger with a transfer's outcome: the money moved once, or not at all."""
    moved = entries(f"{TRANSFER.name}-{key}:")
    source, amount = f"acc-{key}", 1_500
    if result.status is SagaStatus.COMPLETED:
        targets = [account for account in moved if account != source]
        ok = moved.get(source) == -amount and [moved[t] for t in targets] == [amount]
    else:
        ok = all(total == 0 for total in moved.values())
    return [] if ok else [f"{key}: the ledger holds {moved} for a {result.status.value} transfer"]


@dataclass
class Environment:
    """A running demo environment: Temporal, the participants, and one worker."""

    client: Client
    """Connected client."""
    services: RunningServices
    """The demo participants."""
    task_queue: str
    """The worker's task queue."""
    ui: str
    """Web UI base URL."""
    server: DevServer | None
    """The embedded dev server, when this process started it."""
    nats_url: str
    """The broker the event-driven example uses."""


@contextlib.asynccontextmanager
async def environment(
    data_dir: Path,
    *,
    address: str = "127.0.0.1:7233",
    ui_port: int = 8233,
    task_queue: str = "sagaloom-examples",
    nats_url: str = DEFAULT_NATS_URL,
) -> AsyncIterator[Environment]:
    """Run Temporal, NATS, the demo participants and a worker; stop what was started on exit.

    Uses the Temporal server at ``address`` and the NATS server at ``nats_url`` if they run
    there, else starts the embedded defaults.
    """
    async with (
        embedded_server(data_dir, address, ui_port=ui_port) as server,
        embedded_broker(data_dir, nats_url),
    ):
        endpoint = f"127.0.0.1:{free_port()}"  # the worker's health and reply endpoint
        os.environ["LEDGER_DB"] = str(data_dir / "ledger.sqlite3")  # the ledger activities' store
        services = serve(
            data_dir / "services",
            reply_urls=(f"http://{endpoint}/replies",),
            nats_url=nats_url,
        )
        stop = asyncio.Event()
        worker: asyncio.Task[None] | None = None
        try:
            client = await connect(address, payloads=PayloadStore("nats", nats_url))
            config = WorkerConfig(
                address=address,
                task_queue=task_queue,
                services=services.urls,
                saga_modules=(*SAGA_MODULES, *BROKER_SAGA_MODULES),
                health_address=endpoint,
                reply_secret=SecretStr(secrets.token_urlsafe(24)),
                nats_url=nats_url,
            )
            worker = asyncio.create_task(run_worker(config, stop))
            ui = server.ui_url or DEFAULT_UI if server is not None else DEFAULT_UI
            yield Environment(client, services, task_queue, ui, server, nats_url)
        finally:
            stop.set()
            if worker is not None:
                await worker
            services.close()


@dataclass(frozen=True)
class Checked:
    """A demo saga's outcome, checked against its scenario and the participants' stores."""

    scenario: Scenario
    outcome: Outcome
    problems: list[str]

    @property
    def ok(self) -> bool:
        """Whether it ended as expected and the stores agree."""
        report = self.outcome.report
        failed = report.failed_step if report else None
        return (
            self.outcome.status is self.scenario.expect
            and failed == self.scenario.failed_step
            and not self.problems
        )


async def run_scenarios(
    client: Client,
    urls: dict[str, str],
    task_queue: str,
    batch: str,
    *,
    services: RunningServices | None = None,
) -> list[Checked]:
    """Inject each scenario's faults, run all scenarios at once, and check every outcome.

    Business keys are ``<batch>-<label>``, so batches never collide. The event-driven
    scenarios run where ``services`` has the warehouse (and the worker a broker).
    """
    broker = services is not None and services.warehouse is not None
    scenarios = [s for s in SCENARIOS if broker or not _uses_broker(s.saga)]
    async with httpx.AsyncClient(timeout=10) as http:
        for scenario in scenarios:
            for service, fault in scenario.faults:
                key = f"{batch}-{scenario.label}"
                response = await http.post(
                    f"{urls[service]}/_admin/faults", json={**fault, "match": key}
                )
                response.raise_for_status()
        handles = [
            await start_saga(client, s.saga, s.data(f"{batch}-{s.label}"), task_queue=task_queue)
            for s in scenarios
        ]
        fixes = [
            asyncio.ensure_future(_fix_then_redrive(client, http, urls, s, h))
            for s, h in zip(scenarios, handles, strict=True)
            if s.fix_when_held
        ]
        results = await asyncio.wait_for(asyncio.gather(*(outcome(h) for h in handles)), 180)
        await asyncio.gather(*fixes)
        return [
            Checked(s, r, await check_stores(http, urls, s.saga, f"{batch}-{s.label}", r, services))
            for s, r in zip(scenarios, results, strict=True)
        ]


async def _fix_then_redrive(
    client: Client, http: httpx.AsyncClient, urls: dict[str, str], scenario: Scenario, handle: Any
) -> None:
    """Wait for the saga to hold, "deploy the fix" (its faults go), and redrive it."""
    while True:
        state = await handle.query("saga_state", result_type=SagaState)
        if state.status is SagaStatus.HELD:
            break
        await asyncio.sleep(0.5)
    key = handle.id.removeprefix(f"{scenario.saga.name}-")
    for service, _ in scenario.faults:
        response = await http.delete(f"{urls[service]}/_admin/faults", params={"match": key})
        response.raise_for_status()
    await redrive(client, handle.id, note="demo: the fix is deployed", by="demo")


async def run_demo(
    data_dir: Path,
    *,
    address: str = "127.0.0.1:7233",
    ui_port: int = 8233,
    nats_url: str = DEFAULT_NATS_URL,
) -> int:
    """Run the demo batch once; print a line per saga; return 0 when all is as expected."""
    batch = secrets.token_hex(3)
    queue = f"sagaloom-demo-{batch}"
    async with environment(
        data_dir, address=address, ui_port=ui_port, task_queue=queue, nats_url=nats_url
    ) as env:
        checked = await run_scenarios(
            env.client, env.services.urls, env.task_queue, batch, services=env.services
        )
        print()
        for item in checked:
            result, report = item.outcome, item.outcome.report
            undone = ",".join(c.step for c in report.compensations) if report else ""
            failed = report.failed_step if report else None
            print(
                f"{result.status.value:<12} {result.workflow_id:<34} "
                f"failed={failed or '-':<16} undone={undone or '-':<34} "
                f"{'stores agree' if not item.problems else 'MISMATCH'}  "
                f"{ui_link(result.workflow_id, ui=env.ui)}"
            )
            for decision in report.decisions if report else []:
                print(f"    held at {decision.step} ({decision.error[:70]}); "
                      f"{'redriven' if decision.action == 'retry' else decision.action} by "
                      f"{decision.by}: {decision.note}")  # fmt: skip
            for problem in item.problems:
                print(f"    {problem}")
        failures = sum(not item.ok for item in checked)
        failures += await print_events(env.nats_url, f"{FULFILMENT.name}-{batch}-too-many")
        failures += await draw_run(env.client, f"{ORDER.name}-{batch}-declined", data_dir)
        print(
            f"\n{len(checked)}/{len(checked)} sagas ended as expected and their "
            "participants' stores agree."
            if not failures
            else f"\n{failures} saga(s) did NOT end as expected."
        )
        print(f"Worker log: {data_dir / 'demo.log'}")
        if env.server is not None:
            print(f"The Web UI ({env.ui}) stops with the demo: `./run dev` keeps it up.")
        return 0 if failures == 0 else 1


async def draw_run(client: Client, workflow_id: str, data_dir: Path) -> int:
    """Paint one run on its saga's graph with ``saga show --graph``; print where it is.

    Returns:
        1 when the drawing could not be made, else 0.
    """
    path = data_dir / "drawings" / f"{workflow_id}.svg"
    path.parent.mkdir(parents=True, exist_ok=True)
    address = client.service_client.config.target_host
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sagaloom", "show", workflow_id, "--graph", "--format", "svg",
        "--output", str(path), "--address", address, "--module", "workflows.order",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await process.communicate()
    if process.returncode != 0:
        print(f"\nCould not draw {workflow_id}: {err.decode().strip()}")
        return 1
    print(f"\n{workflow_id}, painted on its saga's graph (saga show --graph): "
          f"{path.resolve().as_uri()}")  # fmt: skip
    return 0


def _uses_broker(saga: Saga[Any]) -> bool:
    return saga.events or any(isinstance(s.action, Command) for s in saga.steps)


async def print_events(nats_url: str, workflow_id: str) -> int:
    """Print the lifecycle events a subscriber of the broker saw for one saga.

    Returns:
        1 when none were seen (the event stream is part of what the demo shows), else 0.
    """
    events = await saga_events(nats_url, workflow_id)
    print(f"\nLifecycle events of {workflow_id}, as a subscriber of {EVENTS_STREAM} saw them:")
    for event in events:
        data = event.data
        what = " ".join(f"{k}={data[k]}" for k in ("step", "status", "error") if k in data)
        print(f"  {event.type:<36} {what}"[:140].rstrip())
    return 0 if events else 1


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """``python -m workers.demo [--address HOST:PORT] [--data-dir DIR] [--ui-port N]``."""
    parser = argparse.ArgumentParser(prog="python -m workers.demo", description=__doc__)
    parser.add_argument("--address", default=os.environ.get("TEMPORAL_ADDRESS", "127.0.0.1:7233"))
    parser.add_argument("--ui-port", type=int, default=8233)
    parser.add_argument("--data-dir", type=Path, default=Path(".sagaloom"))
    parser.add_argument(
        "--nats",
        metavar="URL",
        help="the NATS server to use (started there when none runs); default: an embedded one "
        "of the demo's own on a free loopback port, never a broker someone else runs",
    )
    args = parser.parse_args(argv)
    # The demo's output is its table; the worker's log goes to a file beside its data.
    configure_logging("INFO", args.data_dir / "demo.log")
    nats_url = args.nats or f"nats://127.0.0.1:{free_port()}"
    run(run_demo(args.data_dir, address=args.address, ui_port=args.ui_port, nats_url=nats_url))


if __name__ == "__main__":
    main()
