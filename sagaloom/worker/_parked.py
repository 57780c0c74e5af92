"""How many sagas wait for an operator now, as gauges: sampled from Temporal's visibility.

A counter of parks cannot say how many sagas are parked *now* (an operator resolves them; a
worker restarts and its counters begin again). A worker with a metrics endpoint counts them
from visibility instead, every ``every`` seconds: running sagas whose ``SagaStatus`` is
``NEEDS_ATTENTION``, by saga — ``sagaloom_sagas_parked{saga}`` — and how long the oldest of
them has run, ``sagaloom_sagas_parked_oldest_seconds{saga}``. A saga no longer parked reads 0.
Every worker reports the same figures: alerts and panels take ``max by (saga)``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime

from temporalio.client import Client
from temporalio.runtime import Runtime
from temporalio.service import RPCError

from sagaloom._model import SagaStatus
from sagaloom._names import SAGA_NAME

__all__ = ["PARKED_QUERY", "parked_gauges"]

log = logging.getLogger("sagaloom.worker")

PARKED_QUERY = f'ExecutionStatus = "Running" AND SagaStatus = "{SagaStatus.NEEDS_ATTENTION}"'
"""The visibility query of the sagas parked for an operator."""
_MOST = 10_000
"""Most parked sagas read per sample (the count says "at least" past it)."""


@contextlib.asynccontextmanager
async def parked_gauges(client: Client, every: float = 15.0) -> AsyncIterator[None]:
    """Sample the parked sagas into gauges while the block runs."""
    task = asyncio.create_task(_sample_forever(client, every))
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _sample_forever(client: Client, every: float) -> None:
    runtime = client.service_client.config.runtime or Runtime.default()
    meter = runtime.metric_meter
    count = meter.create_gauge("sagaloom_sagas_parked", "Sagas parked for an operator now")
    oldest = meter.create_gauge(
        "sagaloom_sagas_parked_oldest_seconds",
        "How long the oldest saga parked for an operator has run, in seconds",
        "s",
    )
    seen: set[str] = set()
    while True:
        try:
            found = await _parked(client)
        except RPCError as err:  # Temporal unreachable for now: keep the last figures
            log.debug("parked sagas not sampled: %s", err)
        else:
            for saga in seen | set(found):
                number, age = found.get(saga, (0, 0.0))
                count.set(number, {"saga": saga})
                oldest.set(int(age), {"saga": saga})
            seen |= set(found)
        await asyncio.sleep(every)


async def _parked(client: Client) -> dict[str, tuple[int, float]]:
    """Parked sagas by saga name: how many, and the age of the oldest (seconds)."""
    now = datetime.now(UTC)
    found: dict[str, tuple[int, float]] = {}
    async for run in client.list_workflows(PARKED_QUERY, limit=_MOST):
        saga = run.typed_search_attributes.get(SAGA_NAME) or run.workflow_type
        number, age = found.get(saga, (0, 0.0))
        found[saga] = (number + 1, max(age, (now - run.start_time).total_seconds()))
    return found
