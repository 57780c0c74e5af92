"""``saga demo``, the main job, end to end: its own embedded dev server, or one already running."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from sagaloom.server import free_port
from tests._helpers import ROOT, Stack

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
    assert len(lines) == 13
    assert sum(line.startswith("COMPLETED") for line in lines) == 6
    assert sum(line.startswith("COMPENSATED") for line in lines) == 7
    assert all("stores agree" in line for line in lines)
    assert all(
        f"http://localhost:{ui_port}/namespaces/default/workflows/" in line for line in lines
    )
    assert "13/13 sagas ended as expected" in run.stdout
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
    assert "starting the embedded NATS JetStream server" in run.stdout


def test_demo_uses_a_dev_server_that_already_runs(stack: Stack, tmp_path: Path) -> None:
    run = _demo(tmp_path, stack.address, 8233)
    assert "using the Temporal server already running" in run.stdout
    _check(run, 8233)
