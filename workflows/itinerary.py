"""Example saga: a multi-city itinerary — a flight for every leg, a car where one is free, pay.

The legs come with the input, so the bookings are a fan-out (:class:`~sagaloom.ForEach`): one
flight per leg, at most four at a time, each leg with its own idempotency key and its own
cancellation. Cars are optional: ``tolerate=1.0`` lets any leg go without one (the car service
refuses Venice), and the step's output says which legs got one. When the payment is declined,
exactly the flights and cars that were booked are cancelled — never a car that was refused.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from sagaloom import ForEach, Http, ItemContext, Saga, Step, StepContext, saga_workflow

__all__ = ["ITINERARY", "ItineraryInput", "ItinerarySaga", "Leg"]

_ID = r"^[A-Za-z0-9_.-]+$"


class Leg(BaseModel):
    """One leg of the journey."""

    leg_id: str = Field(min_length=1, max_length=32, pattern=_ID)
    """Unique in the itinerary: part of the leg's idempotency keys."""
    destination: str = Field(min_length=1, max_length=100)
    """Where this leg flies to."""
    nights: int = Field(default=1, ge=0, le=60)
    """Nights there (the car is rented for them)."""


class ItineraryInput(BaseModel):
    """An itinerary to book and pay."""

    itinerary_id: str = Field(min_length=1, max_length=64, pattern=_ID)
    """Business key, unique per itinerary."""
    traveller: str = Field(min_length=1, max_length=100)
    """Who travels."""
    legs: list[Leg] = Field(min_length=1, max_length=50)
    """The legs, in order."""
    amount_cents: int = Field(gt=0)
    """The price of it all (the demo's card limit is 100000)."""


class Booking(BaseModel):
    """A booking service's answer."""

    id: str


def _legs(ctx: StepContext[ItineraryInput]) -> list[Leg]:
    return ctx.input.legs


def _booking_key(ctx: ItemContext[ItineraryInput]) -> str:
    return f"{ctx.input.itinerary_id}-{ctx.item.leg_id}"


def _book(ctx: ItemContext[ItineraryInput]) -> dict[str, object]:
    leg: Leg = ctx.item
    return {
        "trip_id": _booking_key(ctx),
        "destination": leg.destination,
        "nights": leg.nights,
        "traveller": ctx.input.traveller,
    }


def _cancel(ctx: ItemContext[ItineraryInput]) -> dict[str, str]:
    return {"trip_id": _booking_key(ctx)}


def _charge(ctx: StepContext[ItineraryInput]) -> dict[str, object]:
    return {"order_id": ctx.input.itinerary_id, "amount_cents": ctx.input.amount_cents}


def _refund(ctx: StepContext[ItineraryInput]) -> dict[str, str]:
    return {"order_id": ctx.input.itinerary_id}


def _each_leg(service: str, **options: object) -> ForEach:
    return ForEach(
        items=_legs,
        key=lambda leg: leg.leg_id,
        do=Http(service, "POST", "/bookings", body=_book),
        compensation=Http(service, "POST", "/bookings/cancel", body=_cancel),
        **options,  # type: ignore[arg-type]
    )


ITINERARY: Saga[ItineraryInput] = Saga(
    name="ItinerarySaga",
    input=ItineraryInput,
    key=lambda itinerary: itinerary.itinerary_id,
    description="Itinerary: a flight per leg, a car where one is free, then pay",
    steps=[
        Step("book-flights", _each_leg("flights", max_concurrency=4), output=Booking),
        Step("rent-cars", _each_leg("cars", max_concurrency=4, tolerate=1.0), output=Booking),
        Step(
            "charge",
            Http("payment", "POST", "/charges", body=_charge),
            compensation=Http("payment", "POST", "/charges/refund", body=_refund),
        ),
    ],
)
"""The itinerary saga definition."""

ItinerarySaga = saga_workflow(ITINERARY)
"""The itinerary saga's Temporal workflow class (workflow type ``ItinerarySaga``)."""
