"""The workflow sandbox still guards a user's saga module, the way the README writes one.

A step builder that reads the clock or draws a random number would make a saga's history
differ on replay. The plugin passes a saga module through the sandbox only once its builders
pass the worker's check (``tests/worker/test_purity.py``); these builders fail it, so their
module is re-imported inside the sandbox for each run, where ``datetime.now()`` and
``random.random()`` are refused and the saga runs no step. Passing the module through by hand
(``with_passthrough_modules``), unchecked, turns those checks off — measured here with temporalio
1.35: the SDK's note that runtime restrictions "still apply" to passed-through modules holds for
builtins, not for a module's own ``datetime`` and ``random``. That is why the plugin passes a
module through only after checking what its builders reach.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from sagaloom import SagaStatus
from sagaloom.client import outcome, start_saga
from sagaloom.participants import Breakers
from sagaloom.worker import SagaloomPlugin
from tests._impure_sagas import CLOCK, DICE, ClockSaga, DiceSaga, stamp

pytestmark = pytest.mark.integration


def _worker(temporal: Client, queue: str, **options: Any) -> Worker:
    plugin = SagaloomPlugin(services={}, breakers=Breakers(None))
    return Worker(temporal, task_queue=queue, workflows=[ClockSaga, DiceSaga],
                  activities=[stamp], plugins=[plugin], **options)  # fmt: skip


async def _task_failure(handle: WorkflowHandle[Any, Any], within: float = 20) -> tuple[str, bool]:
    """The first workflow task failure's message, and whether any activity was scheduled."""
    deadline = asyncio.get_running_loop().time() + within
    while asyncio.get_running_loop().time() < deadline:
        scheduled = False
        async for event in handle.fetch_history_events():
            if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
                scheduled = True
            if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED:
                return event.workflow_task_failed_event_attributes.failure.message, scheduled
        await asyncio.sleep(0.2)
    raise AssertionError("no workflow task failed")


@pytest.mark.parametrize(("saga", "call"), [(CLOCK, "datetime.datetime.now"),
                                            (DICE, "random.random")])  # fmt: skip
async def test_a_step_builder_that_reads_the_clock_or_random_is_refused(
    temporal: Client, saga: Any, call: str
) -> None:
    queue = f"sandbox-{uuid.uuid4().hex[:6]}"
    async with _worker(temporal, queue):
        handle = await start_saga(temporal, saga, {"ticket_id": uuid.uuid4().hex[:6]},
                                  task_queue=queue)  # fmt: skip
        message, scheduled = await _task_failure(handle)
        await handle.terminate("test over")
    assert call in message, message
    assert not scheduled  # the step never ran


async def test_passing_the_saga_module_through_turns_those_checks_off(temporal: Client) -> None:
    """The measured reason the plugin does not pass saga modules through (see the module doc)."""
    queue = f"sandbox-through-{uuid.uuid4().hex[:6]}"
    restrictions = SandboxRestrictions.default.with_passthrough_modules("tests._impure_sagas")
    runner = SandboxedWorkflowRunner(restrictions=restrictions)
    async with _worker(temporal, queue, workflow_runner=runner):
        handles = [await start_saga(temporal, saga, {"ticket_id": uuid.uuid4().hex[:6]},
                                    task_queue=queue) for saga in (CLOCK, DICE)]  # fmt: skip
        results = [await asyncio.wait_for(outcome(h), 30) for h in handles]
    assert [r.status for r in results] == [SagaStatus.COMPLETED] * 2
