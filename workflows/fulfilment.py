"""Example saga, event-driven: reserve stock over HTTP, then have the warehouse pack it over NATS.

The warehouse (``services/_warehouse.py``) is an event-driven participant: the ``pack`` step
publishes a command to ``sagaloom.cmd.warehouse.pack`` on NATS JetStream and waits for the
warehouse's reply on ``sagaloom.replies``; its compensation sends ``warehouse.unpack`` the same
way. The warehouse refuses more than 50 items in a parcel (a negative reply), and the saga then
releases the stock. With ``events=True`` the saga publishes its life as CloudEvents to the
``SAGALOOM_EVENTS`` stream (``saga events <workflow id>``).
"""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel, Field

from sagaloom import Command, Http, Saga, Step, StepContext, UndoContext, saga_workflow

__all__ = ["FULFILMENT", "FulfilmentInput", "FulfilmentSaga", "Parcel"]


class FulfilmentInput(BaseModel):
    """An order to fulfil from stock."""

    order_id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    """Business key."""
    sku: str = Field(min_length=1)
    """What to ship."""
    quantity: int = Field(gt=0, le=1000)
    """How many."""
    packing_list: str = ""
    """A document for the warehouse, of any size: one over 256 KiB goes to the payload store
    (history keeps a reference), and the command carrying it over the broker's 1 MB travels
    as a reference to the broker's object store."""


class Parcel(BaseModel):
    """The warehouse's answer to a pack command."""

    id: str
    order_id: str
    packing_list_bytes: int = 0
    """The size of the packing list the warehouse received (0 without one)."""


def _reserve(ctx: StepContext[FulfilmentInput]) -> dict[str, object]:
    return {"order_id": ctx.input.order_id, "sku": ctx.input.sku, "quantity": ctx.input.quantity}


def _pack(ctx: StepContext[FulfilmentInput]) -> dict[str, object]:
    body: dict[str, object] = {
        "order_id": ctx.input.order_id,
        "sku": ctx.input.sku,
        "quantity": ctx.input.quantity,
    }
    if ctx.input.packing_list:  # (absent when empty: the command of old runs is unchanged)
        body["packing_list"] = ctx.input.packing_list
    return body


def _order_ref(ctx: UndoContext[FulfilmentInput]) -> dict[str, str]:
    return {"order_id": ctx.input.order_id}


FULFILMENT: Saga[FulfilmentInput] = Saga(
    name="FulfilmentSaga",
    input=FulfilmentInput,
    key=lambda order: order.order_id,
    description="Fulfilment: reserve stock, pack at the warehouse (over NATS)",
    events=True,
    steps=[
        Step(
            "reserve-stock",
            Http("inventory", "POST", "/reservations", body=_reserve),
            compensation=Http("inventory", "POST", "/reservations/release", body=_order_ref),
        ),
        Step(
            "pack",
            Command("warehouse.pack", body=_pack),
            compensation=Command("warehouse.unpack", body=_order_ref),
            output=Parcel,
            reply_timeout=timedelta(minutes=2),
        ),
    ],
)
"""The fulfilment saga definition."""

FulfilmentSaga = saga_workflow(FULFILMENT)
"""The fulfilment saga's Temporal workflow class."""
