"""A participant outage, with and without the breaker, side by side in one run (by hand).

    python -m tests.outage_run --sagas 30 --outage-seconds 60

Two services go down (503) at once for the outage. Sagas with the engine's default retries
(5 attempts from 1 s, back-off 2: about 31 s) reach each service spread over the outage's first
half: the StormOff ones without a breaker, the StormOn ones with the default breaker. Then both
come back. The run prints, per variant: sagas completed and compensated, calls the down service
got (per minute: the retry-storm factor), and the time from recovery until the last saga ended.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid
from pathlib import Path

from temporalio.worker import Worker

from sagaloom import SagaStatus
from sagaloom.client import connect, outcome, start_saga
from sagaloom.participants import Breakers, BreakerSettings
from sagaloom.server import DevServer, DevServerOptions
from sagaloom.worker import SagaloomPlugin
from tests._outage_sagas import STORM_OFF, STORM_ON, StormOffSaga, StormOnSaga
from tests._outage_service import FlakyService


async def run(sagas: int, outage: float) -> None:
    with tempfile.TemporaryDirectory() as folder:
        server = DevServer(DevServerOptions.in_folder(Path(folder)))
        await server.start()
        try:
            await _run(server.address, sagas, outage)
        finally:
            server.stop()


async def _run(address: str, sagas: int, outage: float) -> None:
    client = await connect(address)
    off, on = FlakyService(mode="503"), FlakyService(mode="503")
    for service in (off, on):
        await service.start()
    queue = f"outage-{uuid.uuid4().hex[:6]}"
    plugin = SagaloomPlugin(
        services={"stormoff": off.url, "stormon": on.url}, breakers=Breakers(BreakerSettings())
    )
    async with Worker(client, task_queue=queue, workflows=[StormOffSaga, StormOnSaga],
                      plugins=[plugin], max_concurrent_activities=200):  # fmt: skip
        down = time.monotonic()
        handles = {"off": [], "on": []}  # type: ignore[var-annotated]
        gap = outage / 2 / sagas
        for i in range(sagas):
            for name, saga in (("off", STORM_OFF), ("on", STORM_ON)):
                handles[name].append(
                    await start_saga(client, saga, {"order_id": f"{name}-{i}"}, task_queue=queue)
                )
            await asyncio.sleep(gap)
        await asyncio.sleep(max(0.0, outage - (time.monotonic() - down)))
        back = time.monotonic()
        off.mode = on.mode = "up"
        ended: dict[str, list[tuple[SagaStatus, float]]] = {"off": [], "on": []}

        async def settle(name: str, handle: object) -> None:
            result = await outcome(handle)  # type: ignore[arg-type]
            ended[name].append((result.status, time.monotonic()))

        await asyncio.gather(*(settle(n, h) for n, hs in handles.items() for h in hs))
    for service in (off, on):
        await service.stop()
    minutes = outage / 60
    print(f"{sagas} sagas per variant, service down {outage:.0f} s (503), default step retries\n")
    print(
        "| variant | completed | compensated | calls while down | per minute | drain after recovery"
        " |"
    )
    print("|---|---|---|---|---|---|")
    for name, service in (("no breaker", off), ("breaker (defaults)", on)):
        key = "off" if name == "no breaker" else "on"
        done = sum(s is SagaStatus.COMPLETED for s, _ in ended[key])
        undone = sum(s is SagaStatus.COMPENSATED for s, _ in ended[key])
        calls = len([c for c in service.calls if c.at < back])
        drain = max(at for _, at in ended[key]) - back
        print(f"| {name} | {done} | {undone} | {calls} | {calls / minutes:.0f} | {drain:.1f} s |")


def main() -> None:
    """Run it."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sagas", type=int, default=30)
    parser.add_argument("--outage-seconds", type=float, default=60)
    args = parser.parse_args()
    asyncio.run(run(args.sagas, args.outage_seconds))


if __name__ == "__main__":
    main()
