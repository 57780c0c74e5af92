"""``python -m bench.readme``: the engine written the README's way against the raw SDK saga.

Issue #25's shape, side by side in one run: worker and client in one process, every saga
started at once, a fresh tuned dev server per round, variants in rotated order, medians. The
same 4-step saga (every 10th compensating) four ways:

* **raw SDK saga**: hand-written (``bench._raw``), its models passed through the sandbox as the
  SDK's samples do; a client with pydantic's converter and no plugin;
* **README's way**: ``Client.connect(..., plugins=[SagaloomPlugin()])``, a plain ``Worker`` and
  a module with one saga (``bench._user``): the sandbox re-imports it and the module of its
  models and activities for every saga run;
* **README's way, models passed through**: the same, with the module that holds the pydantic
  models and activities (``bench._models``) passed through; the saga module and its step
  builders stay sandboxed (their clock and random checks hold, ``tests/test_sandbox.py``);
* **everything passed through**: ``bench`` passed through whole (what ``python -m bench`` does;
  the sandbox no longer checks the step builders).

Printed: sagas/s and its ratio to raw, and the benchmark process's CPU per saga (worker and
client; the server's is apart) and its ratio.
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
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from bench._inprocess import cpu_seconds, raw_one
from bench._models import BenchInput
from bench._sagas import ACTIVITIES, RawSaga
from bench._user import BENCH_USER, BenchUserSaga
from sagaloom.client import outcome, start_saga
from sagaloom.participants import Breakers
from sagaloom.server import DevServer, DevServerOptions, free_port
from sagaloom.worker import SagaloomPlugin, configure_logging

PASSED: dict[str, Sequence[str]] = {
    "README's way": (),
    "README's way, models passed through": ("bench._models",),
    "everything passed through": ("bench",),
}
VARIANTS = ["raw SDK saga", *PASSED]


async def _engine(client: Client, queue: str, data: BenchInput) -> bool:
    result = await outcome(await start_saga(client, BENCH_USER, data, task_queue=queue))
    return result.status.value == "COMPLETED"


async def measure(address: str, name: str, count: int) -> tuple[float, float]:
    """(sagas/s, CPU ms per saga) of variant ``name`` for ``count`` sagas started at once."""
    queue = f"readme-{uuid.uuid4().hex[:6]}"
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
        worker, one = Worker(client, task_queue=queue, workflows=[BenchUserSaga],
                             activities=ACTIVITIES, **options), _engine  # fmt: skip
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


async def main() -> None:
    """Run the rounds and print the table."""
    parser = argparse.ArgumentParser(prog="python -m bench.readme", description=__doc__)
    parser.add_argument("--sagas", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    configure_logging("ERROR")  # expected step failures are part of the load
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in VARIANTS}
    with tempfile.TemporaryDirectory() as tmp:
        for round_ in range(args.rounds):
            db = Path(tmp) / f"r{round_}.sqlite3"
            server = DevServer(DevServerOptions(port=free_port(), ui_port=None, db_file=db,
                                                tuned=True))  # fmt: skip
            await server.start()
            try:
                shift = round_ % len(VARIANTS)
                for name in VARIANTS[shift:] + VARIANTS[:shift]:
                    results[name].append(await measure(server.address, name, args.sagas))
                    rate, cpu = results[name][-1]
                    print(f"round {round_ + 1} {name}: {rate:.1f} sagas/s, {cpu:.1f} ms CPU/saga",
                          flush=True)  # fmt: skip
            finally:
                server.stop()
    base_rate = statistics.median(r[0] for r in results["raw SDK saga"])
    base_cpu = statistics.median(r[1] for r in results["raw SDK saga"])
    print(f"\n| variant | sagas/s (median of {args.rounds}) | x raw | CPU ms/saga | x raw |")
    print("|---|---|---|---|---|")
    for name, runs in results.items():
        rate = statistics.median(r[0] for r in runs)
        cpu = statistics.median(r[1] for r in runs)
        print(
            f"| {name} | {rate:.1f} | {rate / base_rate:.2f} | {cpu:.1f} | {cpu / base_cpu:.2f} |"
        )


if __name__ == "__main__":
    asyncio.run(main())
