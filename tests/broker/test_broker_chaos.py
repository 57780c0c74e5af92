"""A short chaos run of event-driven sagas: the broker and the workers SIGKILLed mid-run.

The long run (``python -m tests.chaos_broker``) is in docs/chaos.md; this one keeps the same
invariants in CI: nothing lost, nothing half-done, each effect once, each event stored once.
Every third saga carries a 1.5 MB packing list, so the kills land on payload-store writes and
on commands sent by reference too (issue: large payloads; docs/payloads.md).
"""

from __future__ import annotations

import pytest

from tests.chaos_broker import run

pytestmark = [pytest.mark.integration, pytest.mark.slow]


async def test_sagas_survive_broker_and_worker_sigkills_with_every_invariant() -> None:
    report = await run(
        sagas=30, broker_kills=2, worker_kills=2, chaos_seconds=15, seed=11, documents_every=3
    )
    assert report.broker_kills == 2 and report.worker_kills == 2
    assert sum(report.outcomes.values()) == 30
    assert report.outcomes["COMPENSATED"] > 0 and report.outcomes["COMPLETED"] > 0
    assert report.events >= 4 * 30  # started, two steps, the end: at least
    assert report.poison > 100 and report.stalled == 0  # poison replies stalled nothing
    assert report.documents == 10 and report.stored >= 10  # they went through the store
    assert report.violations == []
