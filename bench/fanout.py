"""``python -m bench.fanout``: a fan-out of 100, 1,000 and 10,000 items in one saga.

Each size runs in a process of its own (its peak RSS is the worker's, with the client beside
it), on one fresh tuned dev server: the saga reserves every item (an in-memory activity, 50 at
a time, batches of 500), then its last step completes — or, in the failing variant, refuses,
so every item is compensated. Printed per run: time, items/s, the history events of the saga
and of all its batch workflows, peak RSS, and the activity calls made (each item once forward,
once back when it fails).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from temporalio.client import Client
from temporalio.worker import Worker

from bench._fan import COUNTS, FAN, FanBenchSaga, finish, reserve, unreserve
from sagaloom.client import connect, outcome, start_saga
from sagaloom.participants import Breakers
from sagaloom.server import DevServer, DevServerOptions, free_port
from sagaloom.worker import SagaloomPlugin, configure_logging


async def one(address: str, items: int, fail: bool) -> dict[str, object]:
    """Run one fan-out saga of ``items`` items in this process; return its figures."""
    configure_logging("ERROR")
    client = await connect(address)
    plugin = SagaloomPlugin(services={}, breakers=Breakers(None))
    queue = f"fan-{items}-{int(fail)}"
    async with Worker(client, task_queue=queue, workflows=[FanBenchSaga],
                      activities=[reserve, unreserve, finish], plugins=[plugin],
                      max_concurrent_activities=100):  # fmt: skip
        began = time.perf_counter()
        handle = await start_saga(
            client,
            FAN,
            {"id": f"{queue}-{int(began)}", "items": items, "fail": fail},
            task_queue=queue,
        )
        result = await outcome(handle)
        seconds = time.perf_counter() - began
    saga_events = len((await handle.fetch_history()).events)
    batch_events = await _batch_events(client, handle.id)
    return {
        "items": items,
        "fail": fail,
        "status": result.status.value,
        "seconds": round(seconds, 1),
        "items_per_s": round(items * (2 if fail else 1) / seconds, 1),
        "saga_events": saga_events,
        "total_events": saga_events + batch_events,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "reserved": COUNTS["reserve"],
        "unreserved": COUNTS["unreserve"],
    }


async def _batch_events(client: Client, saga_id: str) -> int:
    """History events of every run of the saga's batch workflows (forward and undo)."""
    total = 0
    async for run in client.list_workflows('WorkflowType = "sagaloom.Items"'):
        if run.id.startswith(f"{saga_id}:"):
            handle = client.get_workflow_handle(run.id, run_id=run.run_id)
            total += len((await handle.fetch_history()).events)
    return total


def main() -> None:
    """Start a dev server, run each size in a process of its own, print the table."""
    parser = argparse.ArgumentParser(prog="python -m bench.fanout", description=__doc__)
    parser.add_argument("--sizes", default="100,1000,10000")
    parser.add_argument(
        "--one", nargs=3, metavar=("ADDRESS", "ITEMS", "FAIL"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.one:
        address, items, fail = args.one
        print(json.dumps(asyncio.run(one(address, int(items), fail == "1"))), flush=True)
        os._exit(0)  # (the SDK's threads may abort the interpreter's finalization)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        options = DevServerOptions(port=free_port(), ui_port=None, db_file=Path(tmp) / "t.sqlite3",
                                   tuned=True)  # fmt: skip
        server = DevServer(options)
        asyncio.run(server.start())
        try:
            for items in (int(s) for s in args.sizes.split(",")):
                for fail in ("0", "1"):
                    out = subprocess.run(
                        [sys.executable, "-m", "bench.fanout", "--one", server.address,
                         str(items), fail],
                        check=False, capture_output=True, text=True,
                    )  # fmt: skip
                    if out.returncode != 0:
                        raise SystemExit(f"{items} items: exit {out.returncode}\n{out.stderr}")
                    rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
                    print(rows[-1], flush=True)
        finally:
            server.stop()
    print(
        "\n| items | variant | status | time s | item calls/s | saga events | events in all "
        "| peak RSS MB | forward calls | undo calls |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        variant = "last step fails" if r["fail"] else "completes"
        print(f"| {r['items']:,} | {variant} | {r['status']} | {r['seconds']} | {r['items_per_s']} "
              f"| {r['saga_events']} | {r['total_events']:,} | {r['peak_rss_mb']} | "
              f"{r['reserved']:,} | {r['unreserved']:,} |")  # fmt: skip


if __name__ == "__main__":
    main()
