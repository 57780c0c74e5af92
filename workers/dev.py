"""``python -m workers.dev`` (``./run dev``): Temporal, demo participants, a worker, until Ctrl-C.

Start sagas by hand meanwhile (``./run start OrderSaga --input '...' --wait``) and browse them in
the Web UI.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
from pathlib import Path

from sagaloom.client import run as run_then_exit
from sagaloom.worker import configure_logging
from workers.config import TASK_QUEUE
from workers.demo import environment

EXAMPLE = (
    './run start OrderSaga --wait --input \'{"order_id": "o-1", "customer": "ada", '
    '"sku": "widget", "quantity": 1, "amount_cents": 1200, "country": "NL"}\''
)


async def run(data_dir: Path, address: str, ui_port: int) -> int:
    """Keep the environment up until SIGINT or SIGTERM."""
    async with environment(
        data_dir, address=address, ui_port=ui_port, task_queue=TASK_QUEUE
    ) as env:
        urls = " ".join(f"{k}={v}" for k, v in env.services.urls.items())
        print(f"Temporal at {address}; Web UI {env.ui}\nparticipants: {urls}")
        print(f"worker for the example sagas on task queue {env.task_queue!r}. Try:\n  {EXAMPLE}")
        print("Ctrl-C stops everything.")
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await stop.wait()
        print("stopping…")
    return 0


def main() -> None:
    """Parse the arguments and run."""
    parser = argparse.ArgumentParser(prog="python -m workers.dev", description=__doc__)
    parser.add_argument("--address", default=os.environ.get("TEMPORAL_ADDRESS", "127.0.0.1:7233"))
    parser.add_argument("--ui-port", type=int, default=8233)
    parser.add_argument("--data-dir", type=Path, default=Path(".sagaloom"))
    args = parser.parse_args()
    configure_logging("INFO", args.data_dir / "dev.log")
    run_then_exit(run(args.data_dir, args.address, args.ui_port))


if __name__ == "__main__":
    main()
