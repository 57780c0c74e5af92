"""Sagas for the incident tests: three steps by plan, whose failures hold for an operator.

Kept in a module of its own with few imports: the workflow sandbox re-imports it.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from pydantic import BaseModel
from temporalio.common import RetryPolicy

from sagaloom import Http, Saga, Step, StepContext, StepDefaults, UndoContext, saga_workflow


class Plan(BaseModel):
    run: str
    steps: dict[str, str] = {}
    """What each step's participant does (``tests._scripted``): ``ok`` unless named."""
    amount: int = 10


class Out(BaseModel):
    id: str


FAST = RetryPolicy(initial_interval=timedelta(milliseconds=100), maximum_attempts=3)


def _do(name: str) -> Any:
    def build(ctx: StepContext[Plan]) -> dict[str, Any]:
        return {"run": ctx.input.run, "do": ctx.input.steps.get(name, "ok"),
                "amount": ctx.input.amount}  # fmt: skip

    return build


def _undo(name: str) -> Any:
    def build(ctx: UndoContext[Plan]) -> dict[str, Any]:
        return {"run": ctx.input.run, "do": "ok", "got": ctx.step_output}

    return build


def _bug(ctx: StepContext[Plan]) -> dict[str, Any]:
    if ctx.input.steps.get("b") == "builder-bug":
        return {"run": ctx.input.run, "do": "ok", "missing": ctx.outputs["nope"]}  # KeyError
    return _do("b")(ctx)


def hold_saga(name: str, policy: Any, **saga: Any) -> Saga[Plan]:
    return Saga(
        name=name,
        input=Plan,
        key=lambda p: p.run,
        defaults=StepDefaults(retry=FAST, compensation_retry=FAST),
        on_failure=policy,
        breaker=False,
        steps=[
            Step("a", Http("svc", "POST", "/a", body=_do("a")),
                 compensation=Http("svc", "POST", "/a/undo", body=_undo("a")), output=Out),
            Step("b", Http("svc", "POST", "/b", body=_bug),
                 compensation=Http("svc", "POST", "/b/undo", body=_undo("b")), output=Out),
            Step("c", Http("svc", "POST", "/c", body=_do("c")),
                 compensation=Http("svc", "POST", "/c/undo", body=_undo("c"))),
        ],
        **saga,
    )  # fmt: skip


HOLD = hold_saga("HoldSaga", "hold")
HOLD_ALL = hold_saga("HoldAllSaga", "hold-all")
HOLD_DEADLINE = hold_saga("HoldDeadlineSaga", "hold", deadline=timedelta(seconds=6))
HoldSaga = saga_workflow(HOLD)
HoldAllSaga = saga_workflow(HOLD_ALL)
HoldDeadlineSaga = saga_workflow(HOLD_DEADLINE)
HOLD_SAGAS = [HoldSaga, HoldAllSaga, HoldDeadlineSaga]
