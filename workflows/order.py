"""Example saga: an order — reserve stock, charge the payment, create the shipment.

Each step is an HTTP call to a participant service (see ``services/``) and has a compensation:
release the stock, refund the payment, cancel the shipment. Compensations are keyed by the order
id, so they work even when the forward call timed out after taking effect.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from sagaloom import Http, Saga, Step, StepContext, UndoContext, saga_workflow

__all__ = ["ORDER", "Charge", "OrderInput", "OrderSaga", "Reservation", "Shipment"]


class OrderInput(BaseModel):
    """What a customer ordered."""

    order_id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    """Business key, unique per order."""
    customer: str = Field(min_length=1)
    """Who pays."""
    sku: str = Field(min_length=1)
    """What is ordered."""
    quantity: int = Field(gt=0, le=1000)
    """How many."""
    amount_cents: int = Field(gt=0)
    """Total price in cents."""
    country: str = Field(min_length=2, max_length=2)
    """ISO country code of the delivery address."""


class Reservation(BaseModel):
    """The inventory service's answer to a reservation."""

    id: str
    order_id: str


class Charge(BaseModel):
    """The payment service's answer to a charge."""

    id: str
    order_id: str


class Shipment(BaseModel):
    """The shipping service's answer to a shipment."""

    id: str
    order_id: str


def _order_ref(ctx: UndoContext[OrderInput]) -> dict[str, str]:
    return {"order_id": ctx.input.order_id}


def _reserve(ctx: StepContext[OrderInput]) -> dict[str, object]:
    return {"order_id": ctx.input.order_id, "sku": ctx.input.sku, "quantity": ctx.input.quantity}


def _charge(ctx: StepContext[OrderInput]) -> dict[str, object]:
    return {
        "order_id": ctx.input.order_id,
        "customer": ctx.input.customer,
        "amount_cents": ctx.input.amount_cents,
    }


def _ship(ctx: StepContext[OrderInput]) -> dict[str, object]:
    reservation = ctx.output("reserve-stock", Reservation)
    return {
        "order_id": ctx.input.order_id,
        "country": ctx.input.country,
        "reservation_id": reservation.id,
    }


ORDER: Saga[OrderInput] = Saga(
    name="OrderSaga",
    input=OrderInput,
    key=lambda order: order.order_id,
    description="Order: reserve stock, charge payment, create shipment",
    track_steps=True,
    steps=[
        Step(
            "reserve-stock",
            Http("inventory", "POST", "/reservations", body=_reserve),
            compensation=Http("inventory", "POST", "/reservations/release", body=_order_ref),
            output=Reservation,
        ),
        Step(
            "charge-payment",
            Http("payment", "POST", "/charges", body=_charge),
            compensation=Http("payment", "POST", "/charges/refund", body=_order_ref),
            output=Charge,
        ),
        Step(
            "create-shipment",
            Http("shipping", "POST", "/shipments", body=_ship),
            compensation=Http("shipping", "POST", "/shipments/cancel", body=_order_ref),
            output=Shipment,
        ),
    ],
)
"""The order saga definition."""

OrderSaga = saga_workflow(ORDER)
"""The order saga's Temporal workflow class (workflow type ``OrderSaga``)."""
