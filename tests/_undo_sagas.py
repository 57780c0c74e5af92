"""Sagas of several graph shapes whose steps a ``when=`` condition may skip, for the undo-order
tests: each step ``s<n>`` calls ``/s/<n>`` and is undone by ``/s/<n>/undo``; the input names the
steps to skip and the one that fails. Each shape twice: one undo at a time, and in parallel.

Kept in a module of its own with few imports: the workflow sandbox re-imports it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from pydantic import BaseModel
from temporalio.common import RetryPolicy

from sagaloom import Http, Saga, Step, StepContext, StepDefaults, saga_workflow


class Case(BaseModel):
    run: str
    skip: list[str] = []
    """Steps whose condition is false."""
    fail: str = ""
    """The step the participant refuses."""
    fail_how: str = "reject"


SHAPES: dict[str, list[tuple[str, Sequence[str] | None]]] = {
    # (step, after): None is the step before it in the list
    "Chain": [("s0", None), ("s1", None), ("s2", None), ("s3", None), ("s4", None)],
    "Diamond": [("s0", None), ("s1", ("s0",)), ("s2", ("s0",)), ("s3", ("s1", "s2")),
                ("s4", None)],
    "TwoChains": [("s0", ()), ("s1", None), ("s2", None), ("s3", ()), ("s4", None),
                  ("s5", ("s2", "s4"))],
    "Fan": [("s0", None), ("s1", ("s0",)), ("s2", ("s0",)), ("s3", ("s0",)),
            ("s4", ("s1", "s2", "s3")), ("s5", ("s1",))],
}  # fmt: skip

FAST = RetryPolicy(initial_interval=timedelta(milliseconds=50), maximum_attempts=2)


def _when(name: str) -> Any:
    return lambda ctx: name not in ctx.input.skip


def _body(name: str, undo: bool) -> Any:
    def build(ctx: StepContext[Case]) -> dict[str, Any]:
        if undo:
            return {"run": ctx.input.run, "do": "brief"}
        do = ctx.input.fail_how if ctx.input.fail == name else "brief"
        return {"run": ctx.input.run, "do": do}

    return build


def shape_saga(shape: str, parallel: bool) -> Saga[Case]:
    return Saga(
        name=f"Undo{shape}{'Parallel' if parallel else ''}Saga",
        input=Case,
        key=lambda c: c.run,
        defaults=StepDefaults(retry=FAST, compensation_retry=FAST),
        parallel_compensation=parallel,
        breaker=False,
        steps=[
            Step(
                name,
                Http("svc", "POST", f"/s/{name}", body=_body(name, False)),
                compensation=Http("svc", "POST", f"/s/{name}/undo", body=_body(name, True)),
                after=after,
                when=_when(name),
            )
            for name, after in SHAPES[shape]
        ],
    )


UNDO_SAGAS = {
    (shape, parallel): shape_saga(shape, parallel) for shape in SHAPES for parallel in (False, True)
}
UNDO_WORKFLOWS = [saga_workflow(saga) for saga in UNDO_SAGAS.values()]
# the sandbox finds each workflow class by its name in this module
globals().update({cls.__name__: cls for cls in UNDO_WORKFLOWS})
