"""``saga demo``, the main job, end to end: its own embedded dev server, or one already running."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from sagaloom import SagaStatus
from sagaloom.server import free_port
from tests._helpers import ROOT, Stack
from workers.demo import SCENARIOS

pytestmark = pytest.mark.integration


def _demo(tmp: Path, address: str, ui_port: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "workers.demo",
            "--address",
            address,
            "--ui-port",
            str(ui_port),
            "--data-dir",
            str(tmp),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=240,
    )


def _check(run: subprocess.CompletedProcess[str], ui_port: int) -> None:
    assert run.returncode == 0, run.stdout + run.stderr
    lines = [line for line in run.stdout.splitlines() if "/workflows/" in line]
    assert len(lines) == len(SCENARIOS)  # one line per scenario of the demo's table
    for status in (SagaStatus.COMPLETED, SagaStatus.COMPENSATED):
        want = sum(s.expect is status for s in SCENARIOS)
        assert sum(line.startswith(status.value) for line in lines) == want
    assert all("stores agree" in line for line in lines)
    assert all(
        f"http://localhost:{ui_port}/namespaces/default/workflows/" in line for line in lines
    )
    assert f"{len(SCENARIOS)}/{len(SCENARIOS)} sagas ended as expected" in run.stdout
    # one run drawn (see-a-saga.md): the declined order, its charge failed, its stock undone
    (drawn,) = [ln for ln in run.stdout.splitlines() if "painted on its saga's graph" in ln]
    svg = Path(drawn.rsplit(" ", 1)[1].removeprefix("file://")).read_text()
    assert '<g class="step failed" data-step="charge-payment">' in svg
    assert '<g class="step undone" data-step="undo reserve-stock">' in svg
    # the incident: held at the payment answering 500, redriven once fixed, completed
    (held,) = [ln for ln in run.stdout.splitlines() if ln.startswith("    held at ")]
    assert (
        held.startswith("    held at charge-payment (ParticipantUnavailable") and "redriven" in held
    )
    # The event-driven example: its warehouse answers over NATS, and a subscriber of the
    # lifecycle stream saw the compensated saga's life, in order.
    events = run.stdout.split("as a subscriber of SAGALOOM_EVENTS saw them:", 1)[1]
    kinds = [ln.split()[0] for ln in events.splitlines() if ln.startswith("  io.sagaloom.")]
    assert kinds == [
        "io.sagaloom.saga.started",
        "io.sagaloom.step.completed",
        "io.sagaloom.step.failed",
        "io.sagaloom.compensation.completed",
        "io.sagaloom.compensation.completed",
        "io.sagaloom.saga.compensated",
    ]


def test_demo_starts_the_embedded_dev_server_when_none_runs(tmp_path: Path) -> None:
    ui_port = free_port()
    run = _demo(tmp_path, f"127.0.0.1:{free_port()}", ui_port)
    _check(run, ui_port)
    assert "starting the embedded Temporal dev server" in run.stdout
    assert "WAL + synchronous=normal" in run.stdout
    # configuration.md: "The demo's NATS server is always its own, on a free loopback port …
    # never a broker someone else started on 4222"
    (line,) = [ln for ln in run.stdout.splitlines() if "embedded NATS JetStream server" in ln]
    url = line.split(" on ", 1)[1].split()[0]
    assert url.startswith("nats://127.0.0.1:") and not url.endswith(":4222"), line


@pytest.mark.long  # the demo's second path; CI runs the README's (its own server)
def test_demo_uses_a_dev_server_that_already_runs(stack: Stack, tmp_path: Path) -> None:
    run = _demo(tmp_path, stack.address, 8233)
    assert "using the Temporal server already running" in run.stdout
    _check(run, 8233)
