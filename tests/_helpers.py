"""Shared helpers for the integration tests."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client, WorkflowHandle

from sagaloom import SagaState, SagaStatus, StepStatus
from sagaloom.server import free_port
from sagaloom.worker import WorkerConfig
from workers.config import SAGA_MODULES

TASK_QUEUE = "sagaloom-tests"
REPLY_SECRET = "tests-reply-secret"
"""The stack's workers' shared secret of reply tokens."""
EXAMPLES = SAGA_MODULES
"""The example sagas' modules (the reference application's, as a user's project has its own)."""
ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Stack:
    """Handles on the running stack."""

    client: Client
    address: str
    services: dict[str, str]
    tmp: Path
    workers: list[subprocess.Popen[bytes]]
    endpoints: list[str]
    """The main workers' health-and-reply endpoints (the hotel participant replies there)."""

    def worker_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SAGALOOM_")}
        config = WorkerConfig(
            address=self.address,
            task_queue=TASK_QUEUE,
            services=self.services,
            saga_modules=EXAMPLES,
            graceful_shutdown=timedelta(seconds=5),
            reply_secret=SecretStr(REPLY_SECRET),  # every worker takes every participant's reply
            breaker=False,  # these tests inject 503s to see retries end; test_breaker.py waits
        )
        env.update(config.to_env())  # the settings table writes the variables
        env["LEDGER_DB"] = str(self.tmp / "ledger.sqlite3")  # the transfer saga's activities
        return env

    def start_worker(
        self,
        name: str,
        *extra: str,
        endpoint: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.Popen[bytes]:
        if endpoint is not None:
            extra = (*extra, "--health-address", endpoint)
        log = open(self.tmp / f"{name}.log", "ab")  # noqa: SIM115
        return subprocess.Popen(
            [sys.executable, "-m", "sagaloom", "worker", *extra],
            env={**self.worker_env(), **(env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )

    async def pollers(self) -> int:
        response = await self.client.workflow_service.describe_task_queue(
            DescribeTaskQueueRequest(
                namespace="default",
                task_queue=TaskQueue(name=TASK_QUEUE),
                task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
            )
        )
        return len(
            {p.identity for p in response.pollers if time.time() - p.last_access_time.seconds < 30}
        )

    async def wait_for_pollers(self, count: int, within: float = 60) -> None:
        """Wait until ``count`` worker processes poll the tests' task queue."""
        deadline = time.monotonic() + within
        while await self.pollers() < count:
            for worker in self.workers:
                if worker.poll() is not None:
                    raise RuntimeError(f"a worker exited; see {self.tmp}/worker-*.log")
            if time.monotonic() > deadline:
                raise RuntimeError(f"fewer than {count} workers polling after {within}s")
            await asyncio.sleep(0.2)

    async def fault(self, service: str, **fault: Any) -> None:
        async with httpx.AsyncClient() as http:
            response = await http.post(f"{self.services[service]}/_admin/faults", json=fault)
            response.raise_for_status()

    async def state(self, service: str) -> dict[str, Any]:
        async with httpx.AsyncClient() as http:
            return dict((await http.get(f"{self.services[service]}/_admin/state")).json())

    async def record(self, service: str, key: str) -> str:
        """``active``, ``undone`` (applied then compensated) or ``absent`` (never applied)."""
        state = await self.state(service)
        record = next((r for r in state["records"] if r["key"] == key), None)
        if record is None or record["payload"] is None:
            return "absent"
        return str(record["status"])

    async def log(self, service: str, key: str) -> list[dict[str, Any]]:
        return [e for e in (await self.state(service))["log"] if e["key"] == key]


def order(key: str, **overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "order_id": key,
        "customer": "ada",
        "sku": "widget",
        "quantity": 1,
        "amount_cents": 1_999,
        "country": "NL",
    }
    return {**data, **overrides}


def trip(key: str, **overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "trip_id": key,
        "traveller": "grace",
        "destination": "Lisbon",
        "nights": 2,
        "cooling_off_seconds": 0,
    }
    return {**data, **overrides}


async def wait_for_step(
    handle: WorkflowHandle[Any, Any], step: str, status: StepStatus, within: float = 30
) -> SagaState:
    """Poll the saga_state query until ``step`` has ``status``."""
    deadline = time.monotonic() + within
    while True:
        state: SagaState = await handle.query("saga_state", result_type=SagaState)
        if any(s.name == step and s.status == status for s in state.steps):
            return state
        if time.monotonic() > deadline:
            raise AssertionError(f"step {step} never reached {status}: {state}")
        await asyncio.sleep(0.2)


async def wait_for_status(
    handle: WorkflowHandle[Any, Any], status: SagaStatus, within: float = 30
) -> SagaState:
    """Poll the saga_state query until the saga has ``status``."""
    deadline = time.monotonic() + within
    while True:
        state: SagaState = await handle.query("saga_state", result_type=SagaState)
        if state.status is status:
            return state
        if time.monotonic() > deadline:
            raise AssertionError(f"saga never reached {status}: {state}")
        await asyncio.sleep(0.1)


async def count_workflows(client: Client, query: str) -> int:
    return len([w async for w in client.list_workflows(query)])


def cli(
    *args: str, address: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the ``saga`` command against the test server, with the example sagas named.

    ``env``: more variables. (From a test whose worker runs in-process, call it in a thread,
    ``asyncio.to_thread(cli, ...)``: the worker must go on while the command waits.)
    """
    env = {**os.environ, "SAGALOOM_SAGA_MODULES": ",".join(EXAMPLES), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "sagaloom", *args, "--address", address],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=60,
    )


async def wait_for_reply_consumer(url: str, process: subprocess.Popen[bytes]) -> None:
    """Until the broker worker ``process`` has made its reply consumer (it is ready)."""
    import nats

    nc = await nats.connect(url)
    try:
        for _ in range(300):
            try:
                await nc.jetstream().consumer_info("SAGALOOM_REPLIES", "sagaloom-replies")
                return
            except Exception:
                assert process.poll() is None, "the broker worker exited; see its log"
                await asyncio.sleep(0.1)
        raise AssertionError("the broker worker made no reply consumer in 30 s")
    finally:
        await nc.close()


def serve_asgi(
    app: str, folder: Path, env: Mapping[str, str], port: int | None = None
) -> tuple[subprocess.Popen[bytes], int]:
    """Serve ``app`` (``module:attribute``) with uvicorn in a process of its own; wait for it.

    Returns the process and its port (``port``, or a free one). Its log is
    ``<folder>/<module>.log``.
    """
    port = port or free_port()
    log_path = folder / f"{app.split(':')[0].rsplit('.', 1)[-1]}.log"
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port),
             "--log-level", "warning"],
            cwd=ROOT, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    for _ in range(600):
        try:
            httpx.get(f"http://127.0.0.1:{port}/docs", timeout=1)
            return process, port
        except httpx.HTTPError:
            assert process.poll() is None, log_path.read_text()
            time.sleep(0.05)
    raise AssertionError(f"{app} did not start; see {log_path}")
