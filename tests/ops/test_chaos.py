"""Nothing lost, nothing half-done, each effect once under its own key: ~100 sagas of seven shapes
(and cancellations) through worker, server and participant SIGKILLs, participant faults and a
30-second outage of the payment service (its sagas wait for its breaker, none compensates)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.chaos import run_chaos

pytestmark = [pytest.mark.integration, pytest.mark.slow]


async def test_every_saga_ends_done_or_undone_through_chaos(tmp_path: Path) -> None:
    report = await run_chaos(
        tmp_path,
        100,
        seed=11,
        kill_every=2.0,
        server_every=3,
        services_every=4,
        outage=("payment", 30.0),  # longer than a step's retries last: its sagas wait
    )
    print(report.markdown())
    assert report.waited >= 5  # sagas that reached the payment step while it was down
    assert report.violations == []
    assert report.unexpected == []  # 100 sagas finish well within their step budgets
    assert report.lost == 0 and report.parked == 0
    assert sum(report.outcomes.values()) == 100
    assert {"COMPLETED", "COMPENSATED", "CANCELED"} <= set(report.outcomes)
    # regular, exclusive per customer, local activities, parallel, trip, nested trip, fan-out
    assert len(report.shapes) == 7
    # 10 of them, 3 cancelled at 0.5 s (some before any step): none overlapped another
    assert report.exclusive_checked >= 5
    assert report.kills >= 3 and report.server_kills >= 1 and report.participant_kills >= 1
    assert sum(report.faults.values()) > 20 and report.retries > 20
    assert report.keys_checked > 300


@pytest.mark.long  # a check of the harness itself: ./run test --long
async def test_the_key_invariant_catches_an_engine_that_sends_a_fresh_key_per_retry(
    tmp_path: Path,
) -> None:
    # The same harness against a deliberately broken engine (tests/_broken_keys.py): a retried
    # call carries a new Idempotency-Key. The participants' received keys give it away.
    report = await run_chaos(
        tmp_path, 30, seed=5, kill_every=60.0, server_every=0, services_every=0, within=120
    )
    assert report.violations == []
    broken = await run_chaos(
        tmp_path / "broken",
        30,
        seed=5,
        kill_every=60.0,
        server_every=0,
        services_every=0,
        within=30,  # sagas of the broken engine need not settle: its keys already gave it away
        broken_keys=True,
    )
    assert any("not the step's own" in v for v in broken.violations), broken.markdown()
