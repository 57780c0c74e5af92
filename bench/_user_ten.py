"""A user's module that holds ten sagas, as a team groups them by business domain.

``python -m bench.readme`` runs the first of them the README's way: the workflow sandbox
re-imports this module for each saga run, so a module of ten sagas builds ten sagas per run
where ``bench._user`` builds one (issue "What a saga costs": the speed must not depend on it).
"""

from __future__ import annotations

from bench._models import RETRY, BenchInput
from bench._user import steps
from sagaloom import Saga, StepDefaults, saga_workflow

__all__ = ["TEN", "TenSaga0"]

TEN = [
    Saga(
        name=f"TenSaga{n}",
        input=BenchInput,
        key=lambda b: b.id,
        defaults=StepDefaults(retry=RETRY),
        steps=steps(),
    )
    for n in range(10)
]
TenSaga0 = saga_workflow(TEN[0])
TenSaga1 = saga_workflow(TEN[1])
TenSaga2 = saga_workflow(TEN[2])
TenSaga3 = saga_workflow(TEN[3])
TenSaga4 = saga_workflow(TEN[4])
TenSaga5 = saga_workflow(TEN[5])
TenSaga6 = saga_workflow(TEN[6])
TenSaga7 = saga_workflow(TEN[7])
TenSaga8 = saga_workflow(TEN[8])
TenSaga9 = saga_workflow(TEN[9])
