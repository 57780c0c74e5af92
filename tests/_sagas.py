"""A saga for the runtime-rule tests: four HTTP steps whose behaviour the input plans.

Kept in a module of its own with few imports: the workflow sandbox re-imports it.
"""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from typing import Any

from pydantic import BaseModel
from temporalio.common import RetryPolicy

from sagaloom import (
    ChildSaga,
    Http,
    Saga,
    Step,
    StepContext,
    StepDefaults,
    Timer,
    UndoContext,
    saga_workflow,
)
from workflows.order import ORDER

STEP_NAMES = ("a", "b", "c", "d")


class Plan(BaseModel):
    """What each step and compensation does: ``ok`` unless named here."""

    run: str
    steps: dict[str, str] = {}
    wait_minutes: int = 0
    skip: list[str] = []


class Out(BaseModel):
    id: str


def _forward(name: str) -> Any:
    def build(ctx: StepContext[Plan]) -> dict[str, Any]:
        return {
            "run": ctx.input.run,
            "do": ctx.input.steps.get(name, "ok"),
            "seen": sorted(ctx.outputs),
            "prev": ctx.outputs.get(STEP_NAMES[STEP_NAMES.index(name) - 1])
            if name in STEP_NAMES[1:]
            else None,
        }

    return build


def _undo(name: str) -> Any:
    def build(ctx: UndoContext[Plan]) -> dict[str, Any]:
        return {
            "run": ctx.input.run,
            "do": ctx.input.steps.get(f"undo-{name}", "ok"),
            "step_input": ctx.step_input,
            "step_output": ctx.step_output,
        }

    return build


FAST = RetryPolicy(initial_interval=timedelta(milliseconds=100), maximum_attempts=2)


def plan_saga(name: str, steps: list[Step], **options: Any) -> Saga[Plan]:
    """A saga over a :class:`Plan`, with fast retries, keyed by the plan's run id."""
    return Saga(
        name=name,
        input=Plan,
        key=lambda plan: plan.run,
        defaults=StepDefaults(retry=FAST, compensation_retry=FAST),
        steps=steps,
        **options,
    )


def rules_saga(name: str, length: int) -> Saga[Plan]:
    """A saga of ``length`` scripted HTTP steps named a, b, c, d."""
    return plan_saga(
        name,
        [
            Step(
                name,
                Http("svc", "POST", f"/{name}", body=_forward(name)),
                compensation=Http("svc", "POST", f"/{name}/undo", body=_undo(name)),
                output=Out,
            )
            for name in STEP_NAMES[:length]
        ],
    )


RULES = rules_saga("RulesSaga", 4)
RulesSaga = saga_workflow(RULES)

LOCAL_RULES: Saga[Plan] = dataclasses.replace(RULES, name="LocalRulesSaga", local_activities=True)
"""The same saga on the fast path: every step a local activity."""

LocalRulesSaga = saga_workflow(LOCAL_RULES)

SHAPES = {n: rules_saga(f"Rules{n}Saga", n) for n in (1, 2, 3)} | {4: RULES}
"""Scripted sagas of each length, for the property tests."""
Rules1Saga = saga_workflow(SHAPES[1])
Rules2Saga = saga_workflow(SHAPES[2])
Rules3Saga = saga_workflow(SHAPES[3])


def _step(name: str, **extra: Any) -> Step:
    return Step(
        name,
        Http("svc", "POST", f"/{name}", body=_forward(name)),
        compensation=Http("svc", "POST", f"/{name}/undo", body=_undo(name)),
        output=Out,
        **extra,
    )


CONDITIONAL = plan_saga(
    "ConditionalSaga",
    [
        _step("a"),
        _step("b", when=lambda c: "b" not in c.input.skip),
        _step("c", when=lambda c: c.output("a", Out).id == "a-1"),
        _step("d"),
    ],
)
"""b runs unless the plan skips it; c runs when a's output says so."""
ConditionalSaga = saga_workflow(CONDITIONAL)

DEADLINE = plan_saga(
    "DeadlineSaga",
    [
        _step("a"),
        Step("wait", Timer(lambda c: timedelta(minutes=c.input.wait_minutes))),
        _step("b"),
    ],
    deadline=timedelta(hours=1),
)
"""Two steps around a wait, with an hour to finish."""
DeadlineSaga = saga_workflow(DEADLINE)


def _graph_saga(name: str, **options: Any) -> Saga[Plan]:
    return plan_saga(
        name,
        [
            _step("a"),
            _step("b", after=["a"]),
            _step("c", after=["a"]),
            _step("d", after=["b", "c"]),
        ],
        **options,
    )


DIAMOND = _graph_saga("DiamondSaga")
"""a, then b and c in parallel, then d."""
DiamondSaga = saga_workflow(DIAMOND)
PARALLEL_DIAMOND = _graph_saga("ParallelDiamondSaga", parallel_compensation=True)
ParallelDiamondSaga = saga_workflow(PARALLEL_DIAMOND)

CONTINUING = dataclasses.replace(
    rules_saga("ContinuingSaga", 3), continue_on_compensation_error=True
)
"""a, b, c; keeps compensating past a failed compensation."""
ContinuingSaga = saga_workflow(CONTINUING)

PIVOTED = plan_saga(
    "PivotedSaga",
    [
        _step("a"),
        Step("b", Http("svc", "POST", "/b", body=_forward("b")), kind="pivot", output=Out),
        Step("c", Http("svc", "POST", "/c", body=_forward("c")), kind="retriable", output=Out),
    ],
)
"""a (compensatable), b (the pivot), c (retriable)."""
PivotedSaga = saga_workflow(PIVOTED)

REPLYING = plan_saga(
    "ReplyingSaga",
    [_step("a"), _step("b", reply_timeout=timedelta(seconds=3)), _step("c")],
)
"""b's participant confirms asynchronously, within 3 s."""
ReplyingSaga = saga_workflow(REPLYING)

PATIENT = plan_saga(
    "PatientSaga",
    [_step("a"), _step("b", reply_timeout=timedelta(minutes=2)), _step("c")],
)
"""b waits up to two minutes for its reply: time for a flood of refused ones."""
PatientSaga = saga_workflow(PATIENT)

NESTING = plan_saga(
    "NestingSaga",
    [
        _step("p1"),
        Step("trip", ChildSaga(SHAPES[2], input=lambda c: c.input)),
        _step("p2"),
    ],
)
"""p1, then a child saga (Rules2Saga: a, b) as one step, then p2."""
NestingSaga = saga_workflow(NESTING)

BUDGET_ORDER = dataclasses.replace(
    ORDER,
    name="BudgetOrderSaga",
    track_steps=False,
    defaults=StepDefaults(
        compensation_retry=RetryPolicy(
            initial_interval=timedelta(milliseconds=200), maximum_interval=timedelta(seconds=1)
        ),
        compensation_budget=timedelta(seconds=3),
    ),
)
"""The order saga with a 3-second budget for each compensation (the default is 30 minutes)."""
BudgetOrderSaga = saga_workflow(BUDGET_ORDER)

TIMEOUT_RULES = plan_saga(
    "TimeoutRulesSaga",
    [
        _step("a"),
        _step("b", start_to_close=timedelta(seconds=1), schedule_to_close=timedelta(seconds=1)),
        _step("c"),
    ],
)
"""b has one second in all: a slow participant uses its budget up (it may still take effect)."""
TimeoutRulesSaga = saga_workflow(TIMEOUT_RULES)
LOCAL_TIMEOUT_RULES: Saga[Plan] = dataclasses.replace(
    TIMEOUT_RULES, name="LocalTimeoutRulesSaga", local_activities=True
)
LocalTimeoutRulesSaga = saga_workflow(LOCAL_TIMEOUT_RULES)

CANCEL_RULES: Saga[Plan] = dataclasses.replace(
    RULES,
    name="CancelRulesSaga",
    defaults=StepDefaults(retry=FAST, compensation_retry=FAST, heartbeat=timedelta(seconds=1)),
)
"""The rules saga with a 1 s heartbeat: a cancellation reaches a running call within a second."""
CancelRulesSaga = saga_workflow(CANCEL_RULES)
