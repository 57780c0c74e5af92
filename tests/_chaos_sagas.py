"""The chaos harness's sagas, in a module of their own: its workers register exactly these.

The order saga three ways (regular activities, the fast path of local activities, and a
parallel shape where stock and payment run at once), the trip saga (an asynchronous hotel and
a durable timer), a parent saga running the trip as a child, and the itinerary's fan-out over
its legs; all with short timeouts and unlimited retries. Kept with few imports: the workflow
sandbox re-imports it.
"""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from typing import Any

from temporalio.common import RetryPolicy

from sagaloom import (
    ChildSaga,
    Http,
    Saga,
    Step,
    StepContext,
    StepDefaults,
    UndoContext,
    saga_workflow,
)
from workflows.itinerary import ITINERARY
from workflows.order import ORDER
from workflows.trip import TRIP, TripInput

CHAOS_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=200),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=2),
    maximum_attempts=0,
)
CHAOS_DEFAULTS = StepDefaults(
    retry=CHAOS_RETRY,
    start_to_close=timedelta(seconds=2),
    schedule_to_close=timedelta(minutes=10),
    heartbeat=timedelta(seconds=3),
    compensation_retry=CHAOS_RETRY,
    compensation_start_to_close=timedelta(seconds=2),
)

CHAOS_ORDER: Saga[Any] = dataclasses.replace(ORDER, name="ChaosOrderSaga", defaults=CHAOS_DEFAULTS)
"""The order saga with short timeouts and unlimited retries."""
ChaosOrderSaga = saga_workflow(CHAOS_ORDER)

CHAOS_EXCLUSIVE_ORDER: Saga[Any] = dataclasses.replace(
    CHAOS_ORDER, name="ChaosExclusiveOrderSaga", exclusive=lambda o: f"customer:{o.customer}"
)
"""The order saga, one at a time per customer (exclusive keys)."""
ChaosExclusiveOrderSaga = saga_workflow(CHAOS_EXCLUSIVE_ORDER)

CHAOS_FAST_ORDER: Saga[Any] = dataclasses.replace(
    CHAOS_ORDER, name="ChaosFastOrderSaga", local_activities=True
)
"""The same on the fast path: every step a local activity."""
ChaosFastOrderSaga = saga_workflow(CHAOS_FAST_ORDER)

_reserve, _charge, _ship = ORDER.steps
CHAOS_PARALLEL_ORDER: Saga[Any] = dataclasses.replace(
    CHAOS_ORDER,
    name="ChaosParallelOrderSaga",
    steps=[
        dataclasses.replace(_reserve, after=()),
        dataclasses.replace(_charge, after=()),
        dataclasses.replace(_ship, after=("reserve-stock", "charge-payment")),
    ],
)
"""Stock and payment at once, then the shipment: compensated in reverse topological order."""
ChaosParallelOrderSaga = saga_workflow(CHAOS_PARALLEL_ORDER)

CHAOS_TRIP: Saga[Any] = dataclasses.replace(
    TRIP,
    name="ChaosTripSaga",
    defaults=CHAOS_DEFAULTS,
    track_steps=False,
    steps=[
        dataclasses.replace(s, reply_timeout=timedelta(minutes=10)) if s.reply_timeout else s
        for s in TRIP.steps
    ],
)
"""The trip saga: its hotel confirms asynchronously through the workers' reply endpoints,
within the same 10-minute budget the chaos gives every step (the demo's is 2 minutes)."""
ChaosTripSaga = saga_workflow(CHAOS_TRIP)


def _stock(ctx: StepContext[TripInput]) -> dict[str, Any]:
    return {"order_id": ctx.input.trip_id, "sku": "widget", "quantity": 1}


def _charge(ctx: StepContext[TripInput]) -> dict[str, Any]:
    return {"order_id": ctx.input.trip_id, "customer": ctx.input.traveller, "amount_cents": 900}


def _ref(ctx: UndoContext[TripInput]) -> dict[str, Any]:
    return {"order_id": ctx.input.trip_id}


CHAOS_NESTED: Saga[TripInput] = Saga(
    name="ChaosNestedSaga",
    input=TripInput,
    key=lambda t: t.trip_id,
    description="Package: reserve a kit, book the trip (a child saga), charge",
    defaults=CHAOS_DEFAULTS,
    steps=[
        Step(
            "reserve-stock",
            Http("inventory", "POST", "/reservations", body=_stock),
            compensation=Http("inventory", "POST", "/reservations/release", body=_ref),
        ),
        Step("trip", ChildSaga(CHAOS_TRIP, input=lambda c: c.input)),
        Step(
            "charge-payment",
            Http("payment", "POST", "/charges", body=_charge),
            compensation=Http("payment", "POST", "/charges/refund", body=_ref),
        ),
    ],
)
"""A parent saga with the chaos trip as a child step: compensated as a unit, or released."""
ChaosNestedSaga = saga_workflow(CHAOS_NESTED)

CHAOS_ITINERARY: Saga[Any] = dataclasses.replace(
    ITINERARY, name="ChaosItinerarySaga", defaults=CHAOS_DEFAULTS
)
"""The itinerary saga: a fan-out over its legs (flights, then cars where one is free)."""
ChaosItinerarySaga = saga_workflow(CHAOS_ITINERARY)

CHAOS_HOLD_ORDER: Saga[Any] = dataclasses.replace(
    ORDER,
    name="ChaosHoldOrderSaga",
    on_failure="hold",
    defaults=dataclasses.replace(
        CHAOS_DEFAULTS, retry=dataclasses.replace(CHAOS_RETRY, maximum_attempts=2)
    ),
)
"""The order saga as a payments team runs it (``on_failure="hold"``), two attempts a step: the
incident run's (``tests/incident_run.py``) sagas hold where a bad deploy answers 500."""
ChaosHoldOrderSaga = saga_workflow(CHAOS_HOLD_ORDER)
