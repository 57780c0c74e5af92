"""A broker saga with a short reply timeout, for the tests that let a reply be late."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

from temporalio.common import RetryPolicy

from sagaloom import (
    Command,
    Http,
    Saga,
    Step,
    StepContext,
    StepDefaults,
    UndoContext,
    saga_workflow,
)
from workflows.fulfilment import FULFILMENT, FulfilmentInput

QUICK = dataclasses.replace(
    FULFILMENT,
    name="QuickPackSaga",
    steps=[
        FULFILMENT.steps[0],
        dataclasses.replace(FULFILMENT.steps[1], reply_timeout=timedelta(seconds=3)),
    ],
)
"""The fulfilment saga, waiting only 3 seconds for the warehouse's reply."""
QuickPackSaga = saga_workflow(QUICK)


_UNDO_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=500), maximum_interval=timedelta(seconds=1)
)
QUICK_UNDO = dataclasses.replace(
    QUICK,
    name="QuickUndoSaga",
    defaults=StepDefaults(compensation_retry=_UNDO_RETRY, compensation_budget=timedelta(minutes=1)),
    steps=[QUICK.steps[0], dataclasses.replace(QUICK.steps[1], reply_timeout=timedelta(seconds=2))],
)
"""Replies within 2 s; an unanswered undo command is sent again every ~3 s for a minute."""
QuickUndoSaga = saga_workflow(QUICK_UNDO)

BACKOFF_UNDO = dataclasses.replace(
    QUICK,
    name="BackoffUndoSaga",
    defaults=StepDefaults(
        compensation_retry=RetryPolicy(
            initial_interval=timedelta(seconds=1),
            backoff_coefficient=2.0,
            maximum_interval=timedelta(seconds=4),
        ),
        compensation_budget=timedelta(minutes=1),
    ),
    steps=[QUICK.steps[0], dataclasses.replace(QUICK.steps[1], reply_timeout=timedelta(seconds=1))],
)
"""Replies within 1 s; an unanswered undo is sent again after 1, 2, 4, 4, … s (the back-off)."""
BackoffUndoSaga = saga_workflow(BACKOFF_UNDO)

QUICK_PARK = dataclasses.replace(
    QUICK_UNDO,
    name="QuickParkSaga",
    defaults=StepDefaults(compensation_retry=_UNDO_RETRY, compensation_budget=timedelta(seconds=3)),
)
"""The same with a 3-second compensation budget: a silent participant parks it at once."""
QuickParkSaga = saga_workflow(QUICK_PARK)

HELD_PACK = dataclasses.replace(
    FULFILMENT,
    name="HeldPackSaga",
    events=False,
    steps=[dataclasses.replace(FULFILMENT.steps[1], reply_timeout=timedelta(seconds=2))],
)
"""Only the warehouse step, a reply within 2 s: the command breaker's test holds it."""
HeldPackSaga = saga_workflow(HELD_PACK)


def _parcel(ctx: StepContext[FulfilmentInput]) -> dict[str, object]:
    return {"order_id": ctx.input.order_id, "quantity": ctx.input.quantity}


def _ref(ctx: UndoContext[FulfilmentInput]) -> dict[str, object]:
    return {"order_id": ctx.input.order_id}


def _charge(ctx: StepContext[FulfilmentInput]) -> dict[str, object]:
    cents = 500_000 if ctx.input.sku == "yacht" else 1_000  # the payment service declines yachts
    return {"order_id": ctx.input.order_id, "customer": "ada", "amount_cents": cents}


TOOLKIT_PACK = Saga(
    name="ToolkitPackSaga",
    input=FulfilmentInput,
    key=lambda order: order.order_id,
    steps=[
        Step(
            "pack",
            Command("depot.pack", body=_parcel),
            compensation=Command("depot.unpack", body=_ref),
            reply_timeout=timedelta(seconds=30),
        ),
        Step(
            "charge",
            Http("payment", "POST", "/charges", body=_charge),
            compensation=Http("payment", "POST", "/charges/refund", body=_ref),
        ),
    ],
)
"""Pack at a depot built on the participant toolkit (over NATS), then charge (over HTTP)."""
ToolkitPackSaga = saga_workflow(TOOLKIT_PACK)
