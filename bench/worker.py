"""A benchmark worker process: ``python -m bench.worker --address A --task-queue Q``.

Runs the benchmark sagas (engine and hand-written) and the example sagas with the HTTP
participant, on a worker built exactly as ``saga worker`` builds its own.
"""

from __future__ import annotations

import argparse
import asyncio
import signal

from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest

from bench._sagas import ACTIVITIES, WORKFLOWS
from sagaloom.client import connect
from sagaloom.worker import WorkerConfig, build_worker, configure_logging, load_sagas, run_worker
from workers.config import SAGA_MODULES


async def main() -> None:
    """Run until SIGTERM."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--address", required=True)
    parser.add_argument("--task-queue", required=True)
    parser.add_argument("--max-cached-workflows", type=int, default=1000)
    parser.add_argument("--service", action="append", default=[])
    parser.add_argument(
        "--nats", help="run as `saga worker` does, with the broker (transport rows)"
    )
    args = parser.parse_args()
    configure_logging("ERROR")  # expected step failures are part of the load
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(signum, stop.set)
    if args.nats:  # the transport rows: `saga worker` itself, with its broker consumers
        config = WorkerConfig(
            address=args.address,
            task_queue=args.task_queue,
            services=dict(s.split("=", 1) for s in args.service),
            nats_url=args.nats,
            saga_modules=("bench._sagas",),
        )
        ready = asyncio.create_task(_say_ready(args.address, args.task_queue))
        await run_worker(config, stop)
        ready.cancel()
        return
    client = await connect(args.address)
    config = WorkerConfig(
        address=args.address,
        task_queue=args.task_queue,
        max_cached_workflows=args.max_cached_workflows,
        services=dict(s.split("=", 1) for s in args.service),
    )
    worker = build_worker(
        client,
        load_sagas(SAGA_MODULES).values(),
        config=config,
        workflows=WORKFLOWS,
        activities=ACTIVITIES,
        passthrough=["bench"],
    )
    async with worker:
        print("ready", flush=True)
        await stop.wait()


async def _say_ready(address: str, queue: str) -> None:
    """Print ``ready`` once a worker polls ``queue`` (run_worker has no hook of its own)."""
    client = await connect(address)
    while True:
        described = await client.workflow_service.describe_task_queue(
            DescribeTaskQueueRequest(
                namespace="default",
                task_queue=TaskQueue(name=queue),
                task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
            )
        )
        if described.pollers:
            print("ready", flush=True)
            return
        await asyncio.sleep(0.2)


if __name__ == "__main__":
    asyncio.run(main())
