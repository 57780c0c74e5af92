"""The itinerary saga end to end: a fan-out over the input's legs on real worker processes
against the real demo participants — each leg booked once, refused cars never undone, and
exactly what was booked cancelled when the payment is declined."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from sagaloom import SagaStatus
from sagaloom.client import outcome, start_saga
from tests._helpers import TASK_QUEUE, Stack, cli
from workflows.itinerary import ITINERARY

pytestmark = pytest.mark.integration
CITIES = ["Lisbon", "Venice", "Berlin", "Oslo", "Madrid"]


def itinerary(key: str, amount_cents: int = 50_000) -> dict[str, Any]:
    legs = [{"leg_id": f"leg{n}", "destination": city} for n, city in enumerate(CITIES)]
    return {"itinerary_id": key, "traveller": "Ada", "legs": legs, "amount_cents": amount_cents}


async def test_every_leg_is_booked_once_and_a_refused_car_is_tolerated(
    stack: Stack, key: str
) -> None:
    handle = await start_saga(stack.client, ITINERARY, itinerary(key), task_queue=TASK_QUEUE)
    result = await outcome(handle)

    assert result.status is SagaStatus.COMPLETED
    assert result.report is not None
    flights = result.report.outputs["book-flights"]
    assert [f["id"].startswith("flt") for f in flights] == [True] * 5
    cars = result.report.outputs["rent-cars"]
    assert [c is None for c in cars] == [city == "Venice" for city in CITIES]
    for n, city in enumerate(CITIES):
        assert await stack.record("flights", f"{key}-leg{n}") == "active"
        assert await stack.record("cars", f"{key}-leg{n}") == (
            "absent" if city == "Venice" else "active"
        )
        assert [e["op"] for e in await stack.log("flights", f"{key}-leg{n}")] == ["do"]
    rent = result.report.steps[1].items
    assert rent is not None and (rent.done, rent.failed) == (4, 1)
    assert rent.failures[0].startswith("leg1: ")


async def test_a_declined_payment_cancels_exactly_the_legs_booked(stack: Stack, key: str) -> None:
    too_much = itinerary(key, amount_cents=500_000)  # over the demo card's limit: declined
    handle = await start_saga(stack.client, ITINERARY, too_much, task_queue=TASK_QUEUE)
    result = await outcome(handle)

    assert result.status is SagaStatus.COMPENSATED
    assert result.report is not None and result.report.failed_step == "charge"
    for n, city in enumerate(CITIES):
        assert await stack.record("flights", f"{key}-leg{n}") == "undone"
        assert [e["op"] for e in await stack.log("flights", f"{key}-leg{n}")] == ["do", "undo"]
        car = [e["op"] for e in await stack.log("cars", f"{key}-leg{n}")]
        assert car == ([] if city == "Venice" else ["do", "undo"])  # refused: never undone
    assert [c.step for c in result.report.compensations] == ["rent-cars", "book-flights"]


async def test_saga_show_lists_every_item_and_whether_it_was_undone(stack: Stack, key: str) -> None:
    too_much = itinerary(key, amount_cents=500_000)
    handle = await start_saga(stack.client, ITINERARY, too_much, task_queue=TASK_QUEUE)
    await outcome(handle)

    table = await asyncio.to_thread(cli, "show", handle.id, address=stack.address)
    assert table.returncode == 0, table.stderr
    assert "items: 5/5 done · 5 undone" in table.stdout  # the flights: all done, all undone
    shown = await asyncio.to_thread(
        cli, "show", handle.id, "--items", "--json", address=stack.address
    )
    assert shown.returncode == 0, shown.stderr
    rows = json.loads(shown.stdout)["item_rows"]
    cars = [(r["key"], r["status"], r["undo"]) for r in rows if r["step"] == "rent-cars"]
    assert cars == [
        (f"leg{n}", "refused", "-") if city == "Venice" else (f"leg{n}", "done", "undone")
        for n, city in enumerate(CITIES)
    ]
    assert [r["key"] for r in rows if r["step"] == "book-flights"] == [f"leg{n}" for n in range(5)]
    venice = next(r for r in rows if r["step"] == "rent-cars" and r["key"] == "leg1")
    assert "409" in (venice["error"] or "") or "Venice" in (venice["error"] or "")
