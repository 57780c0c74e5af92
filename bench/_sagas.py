"""The benchmark's saga shape: 4 in-process steps, a share failing at the last and compensating.

The same shape three ways: the engine (regular activities), the engine's fast path (local
activities), and a hand-written Temporal workflow. Also a saga that waits on a timer, for the
memory scenario. Sandbox-safe: the workflow sandbox re-imports this module.
"""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from typing import Any

from bench._models import RETRY, STEPS, BenchInput, bench_step, bench_undo
from bench._raw import RawSaga
from bench._user import arg as _arg
from bench._user import steps
from sagaloom import Activity, Command, Http, Saga, Step, StepDefaults, Timer, saga_workflow

__all__ = [
    "ACTIVITIES",
    "BENCH",
    "BENCH_DISJOINT",
    "BENCH_FAST",
    "BENCH_HOT",
    "BENCH_HTTP",
    "BENCH_HTTP_DISJOINT",
    "BENCH_LEAN",
    "BENCH_NATS",
    "BENCH_QUIET",
    "SAGA_DEFS",
    "TRANSPORT_WORKFLOWS",
    "WORKFLOWS",
    "BenchInput",
    "RawSaga",
]


BENCH = Saga(
    name="BenchSaga",
    input=BenchInput,
    key=lambda b: b.id,
    description="Benchmark: 4 steps",
    track_steps=True,
    defaults=StepDefaults(retry=RETRY),
    steps=steps(),
)
BenchSaga = saga_workflow(BENCH)

BENCH_LEAN = dataclasses.replace(BENCH, name="BenchLeanSaga", track_steps=False)  # the default
BenchLeanSaga = saga_workflow(BENCH_LEAN)

BENCH_DISJOINT = dataclasses.replace(
    BENCH_LEAN, name="BenchDisjointSaga", exclusive=lambda b: f"bench:{b.id}"
)  # exclusive keys, none shared: what the isolation costs when nobody waits
BenchDisjointSaga = saga_workflow(BENCH_DISJOINT)
BENCH_HOT = dataclasses.replace(BENCH_LEAN, name="BenchHotSaga", exclusive=lambda b: "bench:hot")
BenchHotSaga = saga_workflow(BENCH_HOT)  # one key for all: they run one at a time

BENCH_QUIET = dataclasses.replace(BENCH_LEAN, name="BenchQuietSaga", live_details=False)
BenchQuietSaga = saga_workflow(BENCH_QUIET)

BENCH_FAST = dataclasses.replace(
    BENCH, name="BenchFastSaga", local_activities=True, track_steps=False
)
BenchFastSaga = saga_workflow(BENCH_FAST)


def _body(step: int) -> Any:
    return lambda c: {"id": c.input.id, "step": step, "fail": c.input.fail_at == step}


BENCH_HTTP = Saga(
    name="BenchHttpSaga",
    input=BenchInput,
    key=lambda b: b.id,
    description="Benchmark: 4 steps over HTTP",
    defaults=StepDefaults(retry=RETRY),
    steps=[
        Step(
            f"step-{i}",
            Http("echo", "POST", f"/step-{i}", body=_body(i)),
            compensation=Http("echo", "POST", f"/step-{i}/undo", body=_body(0)),
        )
        for i in range(1, STEPS + 1)
    ],
)
BenchHttpSaga = saga_workflow(BENCH_HTTP)
BENCH_HTTP_DISJOINT = dataclasses.replace(
    BENCH_HTTP, name="BenchHttpDisjointSaga", exclusive=lambda b: f"bench:{b.id}"
)  # exclusive keys, none shared, on steps that call a participant
BenchHttpDisjointSaga = saga_workflow(BENCH_HTTP_DISJOINT)

BENCH_NATS = Saga(
    name="BenchNatsSaga",
    input=BenchInput,
    key=lambda b: b.id,
    description="Benchmark: 4 steps over NATS commands",
    defaults=StepDefaults(retry=RETRY),
    steps=[
        Step(
            f"step-{i}",
            Command(f"bench.step-{i}", body=_body(i)),
            compensation=Command(f"bench.undo-{i}", body=_body(0)),
        )
        for i in range(1, STEPS + 1)
    ],
)
BenchNatsSaga = saga_workflow(BENCH_NATS)

BENCH_WAIT = Saga(
    name="BenchWaitSaga",
    input=BenchInput,
    key=lambda b: b.id,
    description="Benchmark: a long wait, then a step",
    defaults=StepDefaults(retry=RETRY, schedule_to_close=timedelta(hours=2)),
    steps=[
        Step("wait", Timer(lambda c: timedelta(seconds=c.input.wait_seconds))),
        Step(
            "last",
            Activity(bench_step, arg=_arg(2)),
            compensation=Activity(bench_undo, arg=_arg(2)),
        ),
    ],
)
BenchWaitSaga = saga_workflow(BENCH_WAIT)


WORKFLOWS = [
    BenchSaga,
    BenchLeanSaga,
    BenchQuietSaga,
    BenchFastSaga,
    BenchWaitSaga,
    BenchDisjointSaga,
    BenchHotSaga,
    RawSaga,
]
TRANSPORT_WORKFLOWS = [BenchHttpSaga, BenchNatsSaga, BenchHttpDisjointSaga]
"""Sagas whose workers need the echo participants (``--service echo=...``, ``--nats``)."""
SAGA_DEFS = [BENCH, BENCH_LEAN, BENCH_QUIET, BENCH_FAST, BENCH_WAIT, BENCH_HTTP, BENCH_NATS]
ACTIVITIES = [bench_step, bench_undo]
