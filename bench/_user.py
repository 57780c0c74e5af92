"""The benchmark's saga as a user's module holds it: one saga, its steps, nothing else.

``python -m bench.readme`` runs it the README's way (this module re-imported by the workflow
sandbox for every saga run, as a user's would be); ``bench._sagas`` builds its variants from
the same steps.
"""

from __future__ import annotations

from typing import Any

from bench._models import RETRY, STEPS, BenchInput, StepArg, bench_step, bench_undo
from sagaloom import Activity, Saga, Step, StepDefaults, saga_workflow

__all__ = ["BENCH_USER", "BenchUserSaga", "arg", "steps"]


def arg(step: int) -> Any:
    """Step ``step``'s argument builder (it fails when the input says so)."""
    return lambda c: StepArg(id=c.input.id, step=step, fail=c.input.fail_at == step)


def steps() -> list[Step]:
    """The 4 in-process steps, each with its compensation."""
    return [
        Step(f"step-{i}", Activity(bench_step, arg=arg(i)),
             compensation=Activity(bench_undo, arg=arg(i)))
        for i in range(1, STEPS + 1)
    ]  # fmt: skip


BENCH_USER = Saga(
    name="BenchUserSaga",
    input=BenchInput,
    key=lambda b: b.id,
    defaults=StepDefaults(retry=RETRY),
    steps=steps(),
)
BenchUserSaga = saga_workflow(BENCH_USER)
