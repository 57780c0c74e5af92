"""The demo participants: what each one does and which business rules make it refuse a request."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from services._store import Store

__all__ = ["CATALOG", "Rejection", "ServiceSpec"]

SHIPPABLE = frozenset({"US", "CA", "GB", "DE", "FR", "NL", "JP"})
CARD_LIMIT_CENTS = 100_000
INITIAL_STOCK = {"widget": 10_000, "gadget": 10_000, "unobtainium": 0}


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
    check: Callable[[Store, dict[str, Any]], None] | None = None
    """Business rule run before an effect is applied; raises :class:`Rejection`."""
    apply: Callable[[Store, dict[str, Any], int], None] | None = None
    """Side effect on the service's own counters; called with +1 to apply and -1 to undo."""
    asynchronous: bool = False
    """Accept with 202 and confirm later by calling the engine's reply endpoint."""


def _stock(store: Store, body: dict[str, Any]) -> None:
    sku, quantity = str(body.get("sku")), int(body.get("quantity", 0))
    if sku not in INITIAL_STOCK:
        raise Rejection(404, f"unknown sku {sku!r}")
    if INITIAL_STOCK[sku] - store.counter(f"reserved:{sku}") < quantity:
        raise Rejection(409, f"out of stock: {sku}")


def _reserve(store: Store, body: dict[str, Any], sign: int) -> None:
    store.add(f"reserved:{body['sku']}", sign * int(body["quantity"]))


def _card(store: Store, body: dict[str, Any]) -> None:
    if int(body.get("amount_cents", 0)) > CARD_LIMIT_CENTS:
        raise Rejection(402, "card declined: amount over limit")


def _collect(store: Store, body: dict[str, Any], sign: int) -> None:
    store.add("collected_cents", sign * int(body["amount_cents"]))


def _shippable(store: Store, body: dict[str, Any]) -> None:
    if str(body.get("country", "")).upper() not in SHIPPABLE:
        raise Rejection(422, f"cannot ship to {body.get('country')!r}")


def _hotel_stay(store: Store, body: dict[str, Any]) -> None:
    if int(body.get("nights", 0)) > 30:
        raise Rejection(422, "stays over 30 nights need a long-stay contract")


def _car_available(store: Store, body: dict[str, Any]) -> None:
    if str(body.get("destination", "")).lower() == "venice":
        raise Rejection(409, "no cars in Venice")


CATALOG: tuple[ServiceSpec, ...] = (
    ServiceSpec("inventory", "reservations", "release", "order_id", "res", _stock, _reserve),
    ServiceSpec("payment", "charges", "refund", "order_id", "chg", _card, _collect),
    ServiceSpec("shipping", "shipments", "cancel", "order_id", "shp", _shippable),
    ServiceSpec("flights", "bookings", "cancel", "trip_id", "flt"),
    ServiceSpec("hotels", "bookings", "cancel", "trip_id", "htl", _hotel_stay, asynchronous=True),
    ServiceSpec("cars", "bookings", "cancel", "trip_id", "car", _car_available),
)
"""Every demo participant service."""
