"""A worker checks a saga module's step builders once and passes the module through the sandbox
(docs/sagas.md, "The sandbox, checked once"): a module of any number of sagas is imported once,
not for every run; a builder that reaches the clock, random numbers, I/O or module state keeps
its module in the sandbox, where the call is refused when it runs.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import math
import os
import random
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from decimal import Decimal
from random import choice
from typing import Any

import pytest
from pydantic import BaseModel, Field
from temporalio import workflow
from temporalio.client import Client
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from sagaloom import SagaStatus
from sagaloom.client import outcome, start_saga
from sagaloom.participants import Breakers
from sagaloom.worker import SagaloomPlugin
from sagaloom.worker._purity import builders, impurities, passable_modules
from tests._hidden_clock_sagas import HIDDEN, HiddenClockSaga
from tests._import_log import IMPORTS
from tests._impure_sagas import ClockSaga, DiceSaga, stamp
from tests._mixed_sagas import MixedSaga
from tests._plain_sagas import OTHER, PLAIN, OtherPlainSaga, PlainSaga
from tests.runtime.test_sandbox import _task_failure

CUTOFF = datetime(2024, 1, 1)
COUNT = 0


def _now_helper() -> float:
    return time.time()


def _bumps(_: Any) -> int:
    global COUNT
    COUNT += 1
    return COUNT


class _Stamper:
    def stamp(self) -> str:
        return datetime.now().isoformat()

    def __call__(self, _: Any) -> str:
        return self.stamp()


def _with_noise(_: Any, scale: float) -> float:
    return random.random() * scale


STAMPER = _Stamper()


class _Ticket(BaseModel):
    ticket_id: str = Field(default_factory=lambda: uuid.uuid4().hex)


class _Plain(BaseModel):
    amount: int = 0


def _imports(_: Any) -> int:
    import os as inner

    return inner.getpid()


REACHING: dict[str, tuple[Callable[[Any], Any], str]] = {
    "the clock": (lambda c: datetime.now(), "datetime.now"),
    "random": (lambda c: random.random(), "random.random"),
    "a random choice": (lambda c: choice([1, 2]), "choice"),
    "a uuid": (lambda c: uuid.uuid4(), "uuid.uuid4"),
    "the environment": (lambda c: os.environ["HOME"], "os.environ"),
    "a process's hash": (lambda c: hash(c), "hash"),
    "a file": (lambda c: open("x"), "open"),  # noqa: SIM115
    "a helper on the clock": (lambda c: _now_helper(), "time.time"),
    "a module global changed": (_bumps, "COUNT"),
    "an import": (_imports, "imports os"),
    "a helper object's method": (lambda c: STAMPER.stamp(), "datetime.now"),
    "a model whose default is random": (lambda c: _Ticket(), "uuid.uuid4"),
    "a partial": (functools.partial(_with_noise, scale=2.0), "random.random"),
    "a callable object": (STAMPER, "datetime.now"),
}
PLAIN_BUILDERS: dict[str, Callable[[Any], Any]] = {
    "the workflow's clock": lambda c: workflow.now(),
    "the workflow's random": lambda c: workflow.random().random(),
    "arithmetic": lambda c: math.floor(c) + 1,
    "a decimal": lambda c: Decimal("1.10"),
    "json": lambda c: json.dumps({"c": c}),
    "a date constant": lambda c: CUTOFF + timedelta(days=1),
    "a closure": (lambda step: lambda c: {"step": step, "c": c})(3),
    "a model of the user's": lambda c: _Plain(amount=c),
    "a partial of a plain function": functools.partial(lambda c, n: {"n": n, "c": c}, n=2),
    "a builtin": str,
}


@pytest.mark.parametrize("case", REACHING)
def test_the_check_finds_what_a_builder_must_not_reach(case: str) -> None:
    builder, named = REACHING[case]
    found = impurities(builder)
    assert found and named in found[0], found


@pytest.mark.parametrize("case", PLAIN_BUILDERS)
def test_a_builder_that_reads_its_input_or_the_workflows_clock_passes(case: str) -> None:
    assert impurities(PLAIN_BUILDERS[case]) == []


def test_every_builder_of_a_saga_is_checked_activities_left_out() -> None:
    found = dict(builders(PLAIN))
    assert set(found) == {"PlainSaga.steps[stamp].action.arg", "PlainSaga.key"}
    assert stamp not in found.values()  # an activity runs outside the sandbox
    assert [impurities(fn) for fn in found.values()] == [[], []]
    [hidden] = [fn for where, fn in builders(HIDDEN) if "stamp" in where]
    assert "time.time" in impurities(hidden)[0]


def test_only_modules_whose_sagas_pass_and_that_hold_only_sagas_are_passed_through() -> None:
    prepared: list[type] = []
    chosen = passable_modules(
        [PlainSaga, OtherPlainSaga, ClockSaga, DiceSaga, MixedSaga, HiddenClockSaga],
        prepared.append,
    )
    assert chosen == ["tests._plain_sagas"]
    assert prepared == [PlainSaga]  # imported once in the sandbox, for the module that passed


def test_a_module_the_sandbox_refuses_at_import_stays_sandboxed() -> None:
    def refuse(cls: type) -> None:
        raise RuntimeError("Cannot access datetime.datetime.now from inside a workflow")

    assert passable_modules([PlainSaga], refuse) == []


@pytest.mark.integration
async def test_a_checked_module_is_imported_once_not_per_run_and_a_flagged_one_stays_sandboxed(
    temporal: Client, caplog: pytest.LogCaptureFixture
) -> None:
    queue = f"purity-{uuid.uuid4().hex[:6]}"
    plugin = SagaloomPlugin(services={}, breakers=Breakers(None))
    restrictions = SandboxRestrictions.default.with_passthrough_modules("tests._import_log")
    with caplog.at_level(logging.WARNING, logger="sagaloom.worker"):
        runner = SandboxedWorkflowRunner(restrictions=restrictions)
        worker = Worker(temporal, task_queue=queue, activities=[stamp], plugins=[plugin],
                        workflows=[PlainSaga, OtherPlainSaga, HiddenClockSaga],
                        workflow_runner=runner)  # fmt: skip
    said = [r.getMessage() for r in caplog.records if "stays in the workflow sandbox" in r.message]
    assert len(said) == 1 and "tests._hidden_clock_sagas" in said[0], said
    assert "HiddenClockSaga.steps[stamp].action.arg" in said[0] and "time.time" in said[0]
    plain_before = IMPORTS.count("tests._plain_sagas")
    hidden_before = IMPORTS.count("tests._hidden_clock_sagas")
    async with worker:
        handles = [
            await start_saga(temporal, saga, {"note_id": uuid.uuid4().hex[:6]}, task_queue=queue)
            for saga in (PLAIN, OTHER, PLAIN, OTHER, PLAIN, OTHER)
        ]
        results = [await asyncio.wait_for(outcome(h), 30) for h in handles]
        hidden = await start_saga(temporal, HIDDEN, {"memo_id": "m1"}, task_queue=queue)
        message, scheduled = await _task_failure(hidden)
        await hidden.terminate("test over")
    assert [r.status for r in results] == [SagaStatus.COMPLETED] * 6
    assert IMPORTS.count("tests._plain_sagas") == plain_before  # six runs, no import
    assert IMPORTS.count("tests._hidden_clock_sagas") > hidden_before  # re-imported to run
    assert "time.time" in message and not scheduled  # and refused there, the step never ran
