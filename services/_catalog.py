"""The demo participants: what each one does and which business rules make it refuse a request."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, create_model
from sqlalchemy.ext.asyncio import AsyncSession

from services._store import Books

__all__ = ["CATALOG", "Rejection", "ServiceSpec"]

SHIPPABLE = frozenset({"US", "CA", "GB", "DE", "FR", "NL", "JP"})
CARD_LIMIT_CENTS = 100_000
INITIAL_STOCK = {"widget": 10_000, "gadget": 10_000, "unobtainium": 0}
KEY = Field(min_length=1, max_length=128)


class Rejection(Exception):
    """A business rule refused the request; becomes a 4xx response."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class ServiceSpec:
    """One participant service."""

    name: str
    """Service name, as sagas refer to it."""
    resource: str
    """Collection path: ``POST /<resource>`` does, ``POST /<resource>/<undo>`` undoes."""
    undo: str
    """Name of the undo endpoint (release, refund, cancel)."""
    key_field: str
    """Body field holding the business key."""
    id_prefix: str
    """Prefix of the ids the service hands out."""
    check: Callable[[AsyncSession, dict[str, Any]], Awaitable[None]] | None = None
    """Business rule run before an effect is applied; raises :class:`Rejection`."""
    apply: Callable[[AsyncSession, dict[str, Any], int], Awaitable[None]] | None = None
    """Side effect on the service's own counters; called with +1 to apply and -1 to undo."""
    asynchronous: bool = False
    """Accept with 202 and confirm later through the engine's reply endpoint."""
    fields: dict[str, Any] = field(default_factory=dict)
    """The action's body fields besides the key (``name: (type, default or Field)``)."""

    def action_body(self) -> type[BaseModel]:
        """The action's body model: the key, these fields, and any others (kept as sent)."""
        return create_model(  # type: ignore[call-overload,no-any-return]
            f"{self.name.title()}Command",
            __config__=ConfigDict(extra="allow"),
            **{self.key_field: (str, KEY)},
            **self.fields,
        )

    def undo_body(self) -> type[BaseModel]:
        """The compensation's body model: the business key."""
        return create_model(  # type: ignore[call-overload,no-any-return]
            f"{self.name.title()}Undo", __config__=ConfigDict(extra="allow"),
            **{self.key_field: (str, KEY)},
        )  # fmt: skip


async def _stock(tx: AsyncSession, body: dict[str, Any]) -> None:
    sku, quantity = str(body["sku"]), int(body["quantity"])
    if sku not in INITIAL_STOCK:
        raise Rejection(404, f"unknown sku {sku!r}")
    if INITIAL_STOCK[sku] - await Books.counter(tx, f"reserved:{sku}") < quantity:
        raise Rejection(409, f"out of stock: {sku}")


async def _reserve(tx: AsyncSession, body: dict[str, Any], sign: int) -> None:
    await Books.add(tx, f"reserved:{body['sku']}", sign * int(body["quantity"]))


async def _card(tx: AsyncSession, body: dict[str, Any]) -> None:
    if int(body["amount_cents"]) > CARD_LIMIT_CENTS:
        raise Rejection(402, "card declined: amount over limit")


async def _collect(tx: AsyncSession, body: dict[str, Any], sign: int) -> None:
    await Books.add(tx, "collected_cents", sign * int(body["amount_cents"]))


async def _shippable(tx: AsyncSession, body: dict[str, Any]) -> None:
    if str(body["country"]).upper() not in SHIPPABLE:
        raise Rejection(422, f"cannot ship to {body['country']!r}")


async def _hotel_stay(tx: AsyncSession, body: dict[str, Any]) -> None:
    if int(body["nights"]) > 30:
        raise Rejection(422, "stays over 30 nights need a long-stay contract")


async def _car_available(tx: AsyncSession, body: dict[str, Any]) -> None:
    if str(body["destination"]).lower() == "venice":
        raise Rejection(409, "no cars in Venice")


_STAY = {
    "nights": (int, Field(0, ge=0, le=10_000)),
    "destination": (str, Field("", max_length=200)),
}


CATALOG: tuple[ServiceSpec, ...] = (
    ServiceSpec(
        "inventory",
        "reservations",
        "release",
        "order_id",
        "res",
        _stock,
        _reserve,
        fields={"sku": (str, Field(max_length=64)), "quantity": (int, Field(ge=1, le=1_000_000))},
    ),
    ServiceSpec(
        "payment",
        "charges",
        "refund",
        "order_id",
        "chg",
        _card,
        _collect,
        fields={"amount_cents": (int, Field(ge=0, le=10**12))},
    ),
    ServiceSpec(
        "shipping",
        "shipments",
        "cancel",
        "order_id",
        "shp",
        _shippable,
        fields={"country": (str, Field(max_length=64))},
    ),
    ServiceSpec("flights", "bookings", "cancel", "trip_id", "flt", fields=_STAY),
    ServiceSpec(
        "hotels",
        "bookings",
        "cancel",
        "trip_id",
        "htl",
        _hotel_stay,
        asynchronous=True,
        fields=_STAY,
    ),
    ServiceSpec("cars", "bookings", "cancel", "trip_id", "car", _car_available, fields=_STAY),
)
"""Every demo participant service."""
