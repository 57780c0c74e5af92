"""Worker Versioning: a saga finishes on the build it started on while a newer build takes new ones.

Real worker processes (``saga worker --deployment D --build-id N``) on the dev server, the order
saga against the demo participants; ``saga set-current`` routes new sagas to build 2.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from typing import Any

import pytest
from temporalio.api.enums.v1 import VersioningBehavior
from temporalio.client import WorkflowHandle

from sagaloom import SagaStatus, StepStatus
from sagaloom.client import outcome, start_saga
from tests._helpers import Stack, cli, order, wait_for_step
from workflows.order import ORDER

pytestmark = pytest.mark.integration


async def builds_that_ran(handle: WorkflowHandle[Any, Any]) -> set[str]:
    """The build ids of the workers that completed the saga's workflow tasks."""
    return {
        e.workflow_task_completed_event_attributes.deployment_version.build_id
        async for e in handle.fetch_history_events()
        if e.HasField("workflow_task_completed_event_attributes")
    }


async def test_a_pinned_saga_finishes_on_its_build_while_the_next_build_takes_new_ones(
    stack: Stack, key: str
) -> None:
    deployment, queue = f"shop-{os.urandom(3).hex()}", f"versioned-{os.urandom(3).hex()}"

    def worker(build: str) -> subprocess.Popen[bytes]:
        flags = ("--deployment", deployment, "--build-id", build, "--task-queue", queue)
        return stack.start_worker(f"build-{build}", *flags)

    async def make_current(build: str) -> None:
        done = await asyncio.to_thread(
            cli,
            "set-current",
            "--deployment",
            deployment,
            "--build-id",
            build,
            address=stack.address,
        )
        assert done.returncode == 0, done.stderr
        assert f"{deployment} build {build} is current" in done.stdout

    one = worker("1")
    two = None
    try:
        await make_current("1")
        await stack.fault("shipping", op="do", match=key, mode="slow", delay=6.0, times=1)
        old = await start_saga(stack.client, ORDER, order(key), task_queue=queue)
        await wait_for_step(old, "create-shipment", StepStatus.RUNNING)
        # Build 2 is deployed and made current while the old saga is mid-way.
        two = worker("2")
        await make_current("2")
        new = await start_saga(stack.client, ORDER, order(f"{key}-new"), task_queue=queue)
        assert (await asyncio.wait_for(outcome(new), 30)).status is SagaStatus.COMPLETED
        assert (await asyncio.wait_for(outcome(old), 30)).status is SagaStatus.COMPLETED
        assert await builds_that_ran(old) == {"1"}  # pinned: never moved to build 2
        assert await builds_that_ran(new) == {"2"}
        info = (await old.describe()).raw_description.workflow_execution_info.versioning_info
        assert info.behavior == VersioningBehavior.VERSIONING_BEHAVIOR_PINNED
        assert info.deployment_version.build_id == "1"
    finally:
        for process in (one, two):
            if process is not None:
                process.terminate()
                process.wait(15)


def test_deployment_and_build_id_go_together(stack: Stack) -> None:
    half = cli("worker", "--deployment", "shop", "--task-queue", "nowhere", address=stack.address)
    assert half.returncode == 2
    assert "--deployment and SAGALOOM_BUILD_ID / --build-id go together" in half.stderr


async def test_a_saga_held_on_a_bug_of_its_build_is_moved_to_the_fixed_build_and_redriven(
    stack: Stack, key: str
) -> None:
    """Incidents: a pinned saga stays on its build, so a redrive after the fix first moves it to
    the fixed build (``saga redrive --to-build``, Temporal's versioning override)."""
    from tests._versioned_sagas import VERSIONED

    deployment, queue = f"fix-{os.urandom(3).hex()}", f"fixing-{os.urandom(3).hex()}"

    def worker(build: str) -> subprocess.Popen[bytes]:
        flags = ("--deployment", deployment, "--build-id", build, "--task-queue", queue,
                 "--module", "tests._versioned_sagas")  # fmt: skip
        bug = {"VERSIONED_BUG": "1" if build == "1" else ""}  # build 1 has the bug
        return stack.start_worker(f"fix-build-{build}", *flags, env=bug)

    async def saga(*args: str) -> subprocess.CompletedProcess[str]:
        return await asyncio.to_thread(cli, *args, address=stack.address)

    processes = [worker("1")]
    try:
        assert (await saga("set-current", "--deployment", deployment, "--build-id", "1")
                ).returncode == 0  # fmt: skip
        handle = await start_saga(stack.client, VERSIONED, {"order_id": key}, task_queue=queue)
        async with asyncio.timeout(60):
            while True:
                shown = await saga("show", handle.id, "--json")
                if json.loads(shown.stdout or "{}").get("status") == "HELD":
                    break
                await asyncio.sleep(0.5)
        assert "bug in build 1" in json.loads(shown.stdout)["error"]
        processes.append(worker("2"))  # the fix
        assert (await saga("set-current", "--deployment", deployment, "--build-id", "2")
                ).returncode == 0  # fmt: skip
        moved = await saga("redrive", handle.id, "--deployment", deployment, "--to-build", "2",
                           "--note", "fixed in build 2")  # fmt: skip
        assert moved.returncode == 0, moved.stderr
        result = await asyncio.wait_for(outcome(handle), 60)
        assert result.status is SagaStatus.COMPLETED
        assert result.report is not None and result.report.outputs["check"] == {"checked": key}
        assert "2" in await builds_that_ran(handle)  # the redrive ran on the fixed build
    finally:
        for process in processes:
            process.terminate()
            process.wait(15)
