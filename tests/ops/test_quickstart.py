"""The quick start (docs/quickstart.md) as a newcomer runs it: a fresh project, its own packages.

The Python files are taken verbatim from docs/quickstart.md (the blocks whose first line is
``# file: <path>``) into an empty folder that has its own ``workflows`` and ``activities``
packages — the names Temporal projects use, which sagaloom must not clash with. Then the
page's commands run from that folder: ``saga worker --processes 2 --module ...``, ``saga start
... --wait``, and the single-file script; one saga completes and one compensates, against the
demo participants.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from sagaloom import SagaStatus
from sagaloom.client import outcome
from tests._helpers import ROOT, Stack

pytestmark = pytest.mark.integration
SAGA = str(Path(sys.executable).parent / "saga")
QUICKSTART = ROOT / "docs" / "quickstart.md"
BLOCK = re.compile(r"```python\n# file: (?P<path>\S+)\n(?P<code>.*?)```", re.S)


def readme_files() -> dict[str, str]:
    files = {m["path"]: m["code"] for m in BLOCK.finditer(QUICKSTART.read_text())}
    assert {"workflows/checkout.py", "activities/loyalty.py", "reserve_one.py"} <= set(files)
    return files


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("myshop")
    for package in ("workflows", "activities"):
        (folder / package).mkdir()
        (folder / package / "__init__.py").write_text(f'"""My shop\'s {package}."""\n')
    for path, code in readme_files().items():
        (folder / path).write_text(code)
    return folder


@pytest.fixture(scope="module")
def env(stack: Stack) -> dict[str, str]:
    """A newcomer's shell: the quick start's variables, nothing of this repository on the path."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("SAGALOOM_", "PYTHONPATH"))}
    return {
        **base,
        "TEMPORAL_ADDRESS": stack.address,
        "SAGALOOM_SERVICE_INVENTORY": stack.services["inventory"],
        "SAGALOOM_SERVICE_PAYMENT": stack.services["payment"],
        "SAGALOOM_TASK_QUEUE": f"myshop-{uuid.uuid4().hex[:6]}",
    }


@pytest.fixture(scope="module")
def workers(project: Path, env: dict[str, str], stack: Stack) -> Iterator[subprocess.Popen[str]]:
    log = open(project / "workers.log", "w")  # noqa: SIM115
    process = subprocess.Popen(
        [SAGA, "worker", "--processes", "2", "--module", "workflows.checkout"],
        cwd=project,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
    )
    yield process
    process.send_signal(signal.SIGTERM)
    process.wait(30)
    log.close()


def saga(project: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SAGA, *args], cwd=project, env=env, capture_output=True, text=True, timeout=120
    )


def checkout(key: str, amount: int) -> str:
    return json.dumps({"order_id": key, "sku": "widget", "quantity": 1, "amount_cents": amount})


async def test_the_quick_start_runs_as_the_readme_says(
    project: Path,
    env: dict[str, str],
    workers: subprocess.Popen[str],
    stack: Stack,
    key: str,
) -> None:
    ok = saga(project, env, "start", "CheckoutSaga", "--module", "workflows.checkout", "--wait",
              "--input", checkout(f"{key}-ok", 1_200))  # fmt: skip
    assert ok.returncode == 0, ok.stdout + ok.stderr + (project / "workers.log").read_text()
    assert "COMPLETED" in ok.stdout

    declined = saga(project, env, "start", "CheckoutSaga", "--module", "workflows.checkout",
                    "--wait", "--input", checkout(f"{key}-declined", 250_000))  # fmt: skip
    assert declined.returncode == 1 and "COMPENSATED" in declined.stdout, declined.stderr

    # outcome() reads any handle, typed or not.
    done = await outcome(stack.client.get_workflow_handle(f"CheckoutSaga-{key}-ok"))
    assert done.status is SagaStatus.COMPLETED and done.report is not None
    assert done.report.outputs["award-points"]["points_key"] == (
        f"CheckoutSaga-{key}-ok:award-points"
    )
    undone = await outcome(stack.client.get_workflow_handle(f"CheckoutSaga-{key}-declined"))
    assert undone.status is SagaStatus.COMPENSATED and undone.report is not None
    assert undone.report.failed_step == "charge-payment"
    assert [c.step for c in undone.report.compensations] == ["reserve-stock"]
    assert await stack.record("inventory", f"{key}-declined") == "undone"

    # Both worker processes run the user's saga from the user's own `workflows` package.
    assert workers.poll() is None
    log = (project / "workers.log").read_text()
    assert log.count("sagas CheckoutSaga;") == 2, log
    assert "Traceback" not in log


def test_the_single_file_script_defines_and_runs_its_saga(
    project: Path, env: dict[str, str], key: str
) -> None:
    run = subprocess.run(
        [sys.executable, "reserve_one.py", f"{key}-one", "widget"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.split()[0] == "COMPLETED", run.stdout + run.stderr


def test_the_cli_says_how_to_name_a_module(project: Path, env: dict[str, str]) -> None:
    unknown = saga(project, env, "start", "CheckoutSaga", "--input", "{}")
    assert unknown.returncode == 2
    assert "--module" in unknown.stderr and "Traceback" not in unknown.stderr
    missing = saga(
        project, env, "start", "CheckoutSaga", "--module", "nosuch.sagas", "--input", "{}"
    )
    assert missing.returncode == 2
    assert "cannot import 'nosuch'" in missing.stderr and "current folder" in missing.stderr


def test_workers_find_the_module_in_the_current_folder(project: Path, env: dict[str, str]) -> None:
    deadline = time.monotonic() + 5
    worker = subprocess.Popen(
        [SAGA, "worker", "--module", "workflows.checkout", "--task-queue", "probe"],
        cwd=project,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        while time.monotonic() < deadline and worker.poll() is None:
            time.sleep(0.2)
        assert worker.poll() is None, worker.stdout.read() if worker.stdout else ""
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(30)
