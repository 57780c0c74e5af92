"""How many sagas wait for an operator now, as gauges: sampled from Temporal's visibility.

A counter of parks cannot say how many sagas are parked *now* (an operator resolves them; a
worker restarts and its counters begin again). A worker with a metrics endpoint counts them
from visibility instead, every ``every`` seconds: running sagas whose ``SagaStatus`` is
``NEEDS_ATTENTION``, by saga — ``sagaloom_sagas_parked{saga}`` — and how long the oldest of
them has run, ``sagaloom_sagas_parked_oldest_seconds{saga}``; and the sagas HELD at a failed
step, by saga and step — ``sagaloom_sagas_held{saga,step}`` — with the oldest's age,
``sagaloom_sagas_held_oldest_seconds{saga,step}``. A saga no longer parked or held reads 0.
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

from sagaloom._saga._model import SagaStatus
from sagaloom._wire._names import SAGA_NAME, SAGA_STEP

__all__ = ["HELD_QUERY", "PARKED_QUERY", "parked_gauges"]

log = logging.getLogger("sagaloom.worker")

PARKED_QUERY = f'ExecutionStatus = "Running" AND SagaStatus = "{SagaStatus.NEEDS_ATTENTION}"'
"""The visibility query of the sagas parked for an operator."""
HELD_QUERY = f'ExecutionStatus = "Running" AND SagaStatus = "{SagaStatus.HELD}"'
"""The visibility query of the sagas held at a failed step."""
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
    held = meter.create_gauge("sagaloom_sagas_held", "Sagas held at a failed step now")
    held_oldest = meter.create_gauge(
        "sagaloom_sagas_held_oldest_seconds",
        "How long the oldest saga held at a failed step has run, in seconds",
        "s",
    )
    seen: set[tuple[str, ...]] = set()
    while True:
        try:
            found = await _count(client, PARKED_QUERY, by_step=False)
            found |= await _count(client, HELD_QUERY, by_step=True)
        except RPCError as err:  # Temporal unreachable for now: keep the last figures
            log.debug("parked and held sagas not sampled: %s", err)
        else:
            for labels in seen | set(found):
                number, age = found.get(labels, (0, 0.0))
                if len(labels) == 1:
                    count.set(number, {"saga": labels[0]})
                    oldest.set(int(age), {"saga": labels[0]})
                else:
                    held.set(number, {"saga": labels[0], "step": labels[1]})
                    held_oldest.set(int(age), {"saga": labels[0], "step": labels[1]})
            seen |= set(found)
        await asyncio.sleep(every)


async def _count(
    client: Client, query: str, *, by_step: bool
) -> dict[tuple[str, ...], tuple[int, float]]:
    """The sagas ``query`` finds by saga name (and step): how many, the oldest's age (s)."""
    now = datetime.now(UTC)
    found: dict[tuple[str, ...], tuple[int, float]] = {}
    async for run in client.list_workflows(query, limit=_MOST):
        attrs = run.typed_search_attributes
        labels: tuple[str, ...] = (attrs.get(SAGA_NAME) or run.workflow_type,)
        if by_step:
            labels += (attrs.get(SAGA_STEP) or "?",)
        number, age = found.get(labels, (0, 0.0))
        found[labels] = (number + 1, max(age, (now - run.start_time).total_seconds()))
    return found
