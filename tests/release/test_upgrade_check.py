"""``saga upgrade-check``: the running sagas a release cannot replay, counted on a real server.

docs/upgrading.md: every run records the release that started it (``SagaloomVersion``); a
release replays the runs of the lines its table lists; ``saga upgrade-check --to X`` counts
the running sagas X cannot replay and exits 1 while there are any. The expectations come from
that page and the release table it prints, not from the command's code.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from temporalio.client import Client
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.worker import Worker

from sagaloom import SAGA_KEY, SAGA_NAME, SAGALOOM_VERSION, SagaState, StepStatus
from sagaloom.client import connect, start_saga
from sagaloom.server import DevServer, DevServerOptions
from tests._helpers import ROOT
from tests._sagas import DEADLINE, DeadlineSaga
from tests._scripted import scripted

pytestmark = pytest.mark.integration
QUEUE = "upgrade-check"


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[DevServer]:
    """A server of its own: the counts are the whole namespace's."""
    folder = tmp_path_factory.mktemp("upgrade")
    dev = DevServer(DevServerOptions.in_folder(folder, ui=False))
    await dev.start()
    try:
        yield dev
    finally:
        dev.stop()


def check(address: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sagaloom", "upgrade-check", "--address", address, *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )


async def _waiting(client: Client, run: str) -> None:
    """Start a 0.1.0 saga that waits on its timer (it runs on for an hour)."""
    handle = await start_saga(client, DEADLINE, {"run": run, "wait_minutes": 60}, task_queue=QUEUE)
    for _ in range(300):
        state = await handle.query("saga_state", result_type=SagaState)
        if state.steps[1].status is StepStatus.RUNNING:
            return
        await asyncio.sleep(0.1)
    raise AssertionError("the saga never reached its timer")


async def test_runs_of_a_development_build_block_0_1_until_they_are_drained(
    server: DevServer,
) -> None:
    client = await connect(server.address)
    async with Worker(
        client,
        task_queue=QUEUE,
        workflows=[DeadlineSaga],
        activities=[scripted],
    ):
        run = uuid.uuid4().hex[:8]
        await _waiting(client, f"{run}-a")
        await _waiting(client, f"{run}-b")
        # Two sagas of this release run, and nothing else: the upgrade to it is safe.
        ok = await asyncio.to_thread(check, server.address, "--to", "0.1.0", "--json")
        assert ok.returncode == 0, ok.stderr
        assert json.loads(ok.stdout) == {
            "to": "0.1.0",
            "running": {"0.1.0": 2},
            "blocked": [],
            "ok": True,
        }
        # A run a development build started (before 0.1.0: it recorded no release), kept on
        # that build's own task queue, as a pinned build would serve it.
        old = await client.start_workflow(
            DEADLINE.name,
            {"run": f"{run}-old", "wait_minutes": 60},
            id=f"DeadlineSaga-{run}-old",
            task_queue="pinned-pre-0.1",
            search_attributes=TypedSearchAttributes(
                [SearchAttributePair(SAGA_NAME, DEADLINE.name), SearchAttributePair(SAGA_KEY, run)]
            ),
        )
        blocked = await asyncio.to_thread(check, server.address, "--to", "0.1.0")
        assert blocked.returncode == 1, blocked.stderr
        lines = blocked.stdout.splitlines()
        assert any(ln.split()[:2] == ["pre-0.1.0", "1"] and "drain" in ln for ln in lines)
        assert any(ln.split()[:3] == ["0.1.0", "2", "ok"] for ln in lines)
        assert "not yet: 1 running saga(s) started by sagaloom pre-0.1.0" in blocked.stdout
        assert "pinned worker build" in blocked.stdout
        # A run of a release this build does not know (a newer one) blocks too: its line is
        # not one 0.1.0 replays.
        await client.start_workflow(
            DEADLINE.name,
            {"run": f"{run}-new", "wait_minutes": 60},
            id=f"DeadlineSaga-{run}-new",
            task_queue="pinned-0.9",
            search_attributes=TypedSearchAttributes(
                [
                    SearchAttributePair(SAGA_NAME, DEADLINE.name),
                    SearchAttributePair(SAGALOOM_VERSION, "0.9.0"),
                ]
            ),
        )
        both = json.loads((await asyncio.to_thread(check, server.address, "--json")).stdout)
        assert both["running"] == {"0.1.0": 2, "pre-0.1.0": 1, "0.9.0": 1}
        assert both["blocked"] == [
            {"version": "pre-0.1.0", "count": 1, "known": True},
            {"version": "0.9.0", "count": 1, "known": False},
        ]
        # Drained (here: the old build's run ended), only the unknown one is left.
        await old.terminate("drained on its own build")
        left = json.loads((await asyncio.to_thread(check, server.address, "--json")).stdout)
        assert [b["version"] for b in left["blocked"]] == ["0.9.0"]


async def test_a_release_the_table_does_not_hold_is_a_clear_error(server: DevServer) -> None:
    unknown = await asyncio.to_thread(check, server.address, "--to", "7.0.0")
    assert unknown.returncode == 2
    assert unknown.stderr.strip() == (
        "saga upgrade-check: error: unknown sagaloom release '7.0.0' (known: 0.1.0)"
    )
    assert "Traceback" not in unknown.stderr


def test_the_version_is_written_once_and_read_by_the_wheel_and_the_cli() -> None:
    """CONTRIBUTING.md: the version lives in ``sagaloom/_wire/_release.py``, nowhere else."""
    import tomllib

    import sagaloom

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert "version" not in project and project["dynamic"] == ["version"]
    shown = subprocess.run(
        [sys.executable, "-m", "sagaloom", "--version"], capture_output=True, text=True, timeout=60
    )
    assert shown.stdout.strip() == f"sagaloom {sagaloom.__version__}"
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert f"## [{sagaloom.__version__}] - " in changelog
    assert (
        Path(ROOT / "sagaloom" / "_wire" / "_release.py")
        .read_text()
        .count(f'VERSION = "{sagaloom.__version__}"')
        == 1
    )
