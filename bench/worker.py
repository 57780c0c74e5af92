"""A benchmark worker process: ``python -m bench.worker --address A --task-queue Q``.

Runs the benchmark sagas (engine and hand-written) and the example sagas with the HTTP
participant, on a worker built exactly as ``saga worker`` builds its own.
"""

from __future__ import annotations

import argparse
import asyncio
import signal

from activities import HttpParticipant
from bench._sagas import ACTIVITIES, WORKFLOWS
from workers import WorkerConfig, build_worker, configure_logging, connect, load_sagas


async def main() -> None:
    """Run until SIGTERM."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--address", required=True)
    parser.add_argument("--task-queue", required=True)
    parser.add_argument("--max-cached-workflows", type=int, default=1000)
    parser.add_argument("--service", action="append", default=[])
    args = parser.parse_args()
    configure_logging("ERROR")  # expected step failures are part of the load
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(signum, stop.set)
    client = await connect(args.address)
    config = WorkerConfig(
        address=args.address,
        task_queue=args.task_queue,
        max_cached_workflows=args.max_cached_workflows,
        services=dict(s.split("=", 1) for s in args.service),
    )
    participant = HttpParticipant(config.services)
    worker = build_worker(
        client,
        config,
        load_sagas().values(),
        participant,
        workflows=WORKFLOWS,
        activities=ACTIVITIES,
        passthrough=["bench"],
    )
    async with worker:
        print("ready", flush=True)
        await stop.wait()
    await participant.aclose()


if __name__ == "__main__":
    asyncio.run(main())
