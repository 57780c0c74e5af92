"""Example saga: a trip — book a flight and a hotel, wait out a cooling-off period, book a car.

The hotel is an asynchronous participant: it accepts the booking (202), then confirms through
the engine's reply endpoint; the step completes with the confirmation.

Its shape differs from the order saga: a durable timer sits between the bookings. Cancelling the
saga during the cooling-off period cancels the flight and the hotel.
"""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel, Field

from sagaloom import Http, Saga, Step, StepContext, Timer, UndoContext, saga_workflow

__all__ = ["TRIP", "Booking", "TripInput", "TripSaga"]


class TripInput(BaseModel):
    """A trip to book."""

    trip_id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    """Business key, unique per trip."""
    traveller: str = Field(min_length=1)
    """Who travels."""
    destination: str = Field(min_length=1)
    """Where to."""
    nights: int = Field(gt=0, le=60)
    """Hotel nights."""
    cooling_off_seconds: int = Field(default=0, ge=0, le=86_400)
    """How long the traveller may still cancel before the car is booked."""


class Booking(BaseModel):
    """A booking service's answer."""

    id: str
    trip_id: str


def _ref(ctx: UndoContext[TripInput]) -> dict[str, str]:
    return {"trip_id": ctx.input.trip_id}


def _book(ctx: StepContext[TripInput]) -> dict[str, object]:
    return {
        "trip_id": ctx.input.trip_id,
        "traveller": ctx.input.traveller,
        "destination": ctx.input.destination,
        "nights": ctx.input.nights,
    }


def _cooling_off(ctx: StepContext[TripInput]) -> timedelta:
    return timedelta(seconds=ctx.input.cooling_off_seconds)


def _booking(service: str, name: str, reply_timeout: timedelta | None = None) -> Step:
    return Step(
        name,
        Http(service, "POST", "/bookings", body=_book),
        compensation=Http(service, "POST", "/bookings/cancel", body=_ref),
        output=Booking,
        reply_timeout=reply_timeout,
    )


TRIP: Saga[TripInput] = Saga(
    name="TripSaga",
    input=TripInput,
    key=lambda trip: trip.trip_id,
    description="Trip: book flight, book hotel, cooling-off, book car",
    track_steps=True,
    steps=[
        _booking("flights", "book-flight"),
        _booking("hotels", "book-hotel", reply_timeout=timedelta(minutes=2)),  # confirms later
        Step("cooling-off", Timer(_cooling_off)),
        _booking("cars", "book-car"),
    ],
)
"""The trip saga definition."""

TripSaga = saga_workflow(TRIP)
"""The trip saga's Temporal workflow class (workflow type ``TripSaga``)."""
