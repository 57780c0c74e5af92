"""The benchmark's saga on the fast path, as a user's module holds it: one saga, nothing else.

The same steps as ``bench._user`` with ``local_activities=True`` (each step a local activity);
``python -m bench.readme`` starts it with ``request_eager_start=True``, the README's way.
"""

from __future__ import annotations

from bench._models import RETRY, BenchInput
from bench._user import steps
from sagaloom import Saga, StepDefaults, saga_workflow

__all__ = ["BENCH_USER_FAST", "BenchUserFastSaga"]

BENCH_USER_FAST = Saga(
    name="BenchUserFastSaga",
    input=BenchInput,
    key=lambda b: b.id,
    defaults=StepDefaults(retry=RETRY),
    steps=steps(),
    local_activities=True,
)
BenchUserFastSaga = saga_workflow(BENCH_USER_FAST)
