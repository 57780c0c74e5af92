"""Per-service limits: calls to a service go at most N a second (all workers) and M at once.

Real dev server, an in-process worker with the sagaloom plugin, and participants on loopback
that count what reaches them. The same burst of sagas goes to an unlimited service (the
control: what the machine does), then to the limited ones.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from temporalio.client import Client
from temporalio.worker import Replayer, Worker

from sagaloom import Saga, SagaStatus
from sagaloom.client import outcome, start_saga
from sagaloom.participants import Breakers
from sagaloom.worker import SagaloomPlugin, ServiceLimit
from tests._outage_sagas import FREE, NARROW_SAGA, RATED_SAGA, FreeSaga, NarrowSaga, RatedSaga
from tests._outage_service import FlakyService, flaky_services

pytestmark = pytest.mark.integration
RATED = ServiceLimit(calls_per_second=4)
NARROW = ServiceLimit(max_concurrent=2)
SAGAS = 24
BURST = 8
"""Calls the server's rate limiter lets through at once before it holds to the rate (a busy
worker can bunch a few of the calls it was handed, too)."""


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def services() -> AsyncIterator[dict[str, FlakyService]]:
    async with flaky_services(("rated", "narrow", "free"), delay=0.3) as running:
        yield running


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def queue(temporal: Client, services: dict[str, FlakyService]) -> AsyncIterator[str]:
    name = f"limits-{uuid.uuid4().hex[:6]}"
    plugin = SagaloomPlugin(
        services={n: s.url for n, s in services.items()},
        breakers=Breakers(None),
        limits={"rated": RATED, "narrow": NARROW},
    )
    async with Worker(temporal, task_queue=name, workflows=SAGAS_OF.values(), plugins=[plugin]):
        yield name


SAGAS_OF = {"rated": RatedSaga, "narrow": NarrowSaga, "free": FreeSaga}
DEFINITIONS = {"rated": RATED_SAGA, "narrow": NARROW_SAGA}


async def burst(temporal: Client, saga: Saga[Any], queue: str) -> list[SagaStatus]:
    run = uuid.uuid4().hex[:6]
    handles = await asyncio.gather(
        *(
            start_saga(temporal, saga, {"order_id": f"{run}-{i}"}, task_queue=queue)
            for i in range(SAGAS)
        )
    )
    return [(await asyncio.wait_for(outcome(h), 120)).status for h in handles]


def rate(service: FlakyService) -> float:
    """Calls a second, first to last."""
    calls = sorted(c.at for c in service.posts())
    return (len(calls) - 1) / max(calls[-1] - calls[0], 1e-3)


async def test_limited_services_get_their_calls_at_the_set_rate_and_concurrency(
    temporal: Client, queue: str, services: dict[str, FlakyService]
) -> None:
    # The control first, alone: what this worker and machine do unlimited (run beside the
    # limited bursts, it measured their contention on a loaded machine, 5.2 calls/s once).
    control = await burst(temporal, FREE, queue)
    limited = await asyncio.gather(
        *(burst(temporal, DEFINITIONS[name], queue) for name in ("rated", "narrow"))
    )
    assert [control, *limited] == [[SagaStatus.COMPLETED] * SAGAS] * 3
    for service in services.values():
        assert sorted(service.charged.values()) == [1] * SAGAS  # each charged once
    free, rated, narrow = services["free"], services["rated"], services["narrow"]
    print(
        f"calls/s free {rate(free):.1f}, rated {rate(rated):.1f} (limit 4), narrow "
        f"{rate(narrow):.1f}; at once: free {free.peak}, rated {rated.peak}, narrow "
        f"{narrow.peak} (limit 2)"
    )
    assert free.peak > 2 and rate(free) > 8  # the same burst, unlimited
    assert narrow.peak <= 2  # max_concurrent, measured at the service
    steady = sorted(c.at for c in rated.posts())[BURST:]
    assert (len(steady) - 1) / (steady[-1] - steady[0]) <= 4 * 1.25  # past the burst: the rate
    # a token bucket: a burst, then `rate` a second, all workers together
    assert within_bucket(rated, per_second=4, burst=BURST)


def within_bucket(service: FlakyService, per_second: float, burst: int) -> bool:
    """Whether every run of calls fits ``burst`` plus ``per_second`` for its time span."""
    calls = sorted(c.at for c in service.posts())
    return all(
        j - i + 1 <= per_second * (calls[j] - calls[i]) + burst
        for i in range(len(calls))
        for j in range(i, len(calls))
    )


async def test_the_routing_is_not_part_of_the_saga_history_replays_without_limits(
    temporal: Client, queue: str, services: dict[str, FlakyService]
) -> None:
    order = {"order_id": uuid.uuid4().hex[:6]}
    handle = await start_saga(temporal, RATED_SAGA, order, task_queue=queue)
    assert (await outcome(handle)).status is SagaStatus.COMPLETED
    history = await handle.fetch_history()
    queues = {
        e.activity_task_scheduled_event_attributes.task_queue.name
        for e in history.events
        if e.HasField("activity_task_scheduled_event_attributes")
    }
    assert queues == {f"{queue}@rated"}
    plain = SagaloomPlugin(services={}, breakers=Breakers(None))  # limits lifted, or set anew
    await Replayer(workflows=[RatedSaga], plugins=[plain]).replay_workflow(history)
