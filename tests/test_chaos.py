"""Nothing lost, nothing half-done: ~100 sagas through worker kills, a server restart and faults."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.chaos import run_chaos

pytestmark = pytest.mark.integration


async def test_every_saga_ends_done_or_undone_through_chaos(tmp_path: Path) -> None:
    report = await run_chaos(tmp_path, 100, seed=11, kill_every=3.0)
    print(report.markdown())
    assert report.violations == []
    assert report.unexpected == []  # 100 sagas finish well within their step budgets
    assert report.lost == 0
    assert report.completed + report.compensated + report.parked == 100
    assert report.kills >= 3 and report.server_restarts == 1
    assert sum(report.faults.values()) > 20 and report.retries > 20
