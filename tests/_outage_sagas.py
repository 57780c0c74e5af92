"""One-step sagas for the breaker tests, each calling a service of its own (one breaker each).

Kept in a module of its own with few imports: the workflow sandbox re-imports it.
"""

from __future__ import annotations

import dataclasses
from datetime import timedelta

from pydantic import BaseModel
from temporalio.common import RetryPolicy

from sagaloom import Http, Saga, Step, StepDefaults, saga_workflow

# Without a breaker a step gives up after 4 quick attempts (well under a second).
QUICK = StepDefaults(
    retry=RetryPolicy(
        initial_interval=timedelta(milliseconds=200), backoff_coefficient=1.0, maximum_attempts=4
    ),
    start_to_close=timedelta(seconds=5),
)


class Charge(BaseModel):
    order_id: str


def _saga(
    name: str, service: str, *, breaker: bool | None = None, defaults: StepDefaults = QUICK
) -> Saga[Charge]:
    return Saga(
        name=name,
        input=Charge,
        key=lambda c: c.order_id,
        defaults=defaults,
        steps=[
            Step(
                "charge",
                Http(service, "POST", "/charges", body=lambda c: {"order_id": c.input.order_id}),
                compensation=Http(
                    service, "POST", "/refunds", body=lambda u: {"order_id": u.input.order_id}
                ),
                breaker=breaker,
            )
        ],
    )


OUTAGE = _saga("OutageSaga", "outage")
REFUSING = _saga("RefusingSaga", "refusing")
BUDGET = _saga("BudgetSaga", "budget")
OPT_OUT = _saga("OptOutSaga", "optout", breaker=False)
HELD = _saga("HeldSaga", "held")
HAND_HELD = _saga("HandHeldSaga", "handheld")
LIMITED_DOWN = _saga("LimitedDownSaga", "limdown")  # a limited service that goes down
HOLD_ME = _saga("HoldMeSaga", "holdme")  # an operator holds its step, then releases it
PICKY = _saga("PickySaga", "picky")
# operating.md: compensations never wait for a breaker. Its charge is done, then its breaker is
# opened by hand while the shipment (slow, then refused) runs: the refund must still go out.
_UNDO_OPEN = _saga("UndoOpenSaga", "undoopen")
UNDO_OPEN = dataclasses.replace(
    _UNDO_OPEN,
    steps=[
        *_UNDO_OPEN.steps,
        Step(
            "ship",
            Http("undoship", "POST", "/charges", body=lambda c: {"order_id": c.input.order_id}),
            breaker=False,
        ),
    ],
)
FLAKY = _saga("FlakySaga", "flaky")
# tests/outage_run.py: the engine's default retries (5 attempts from 1 s, back-off 2)
STORM_OFF = _saga("StormOffSaga", "stormoff", breaker=False, defaults=StepDefaults())
STORM_ON = _saga("StormOnSaga", "stormon", defaults=StepDefaults())
# tests/outages/test_limits.py: the same calls to a limited and an unlimited service
RATED_SAGA = _saga("RatedSaga", "rated", breaker=False)
NARROW_SAGA = _saga("NarrowSaga", "narrow", breaker=False)
FREE = _saga("FreeSaga", "free", breaker=False)

OutageSaga = saga_workflow(OUTAGE)
RefusingSaga = saga_workflow(REFUSING)
BudgetSaga = saga_workflow(BUDGET)
OptOutSaga = saga_workflow(OPT_OUT)
HeldSaga = saga_workflow(HELD)
HandHeldSaga = saga_workflow(HAND_HELD)
LimitedDownSaga = saga_workflow(LIMITED_DOWN)
HoldMeSaga = saga_workflow(HOLD_ME)
PickySaga = saga_workflow(PICKY)
UndoOpenSaga = saga_workflow(UNDO_OPEN)
FlakySaga = saga_workflow(FLAKY)
StormOffSaga = saga_workflow(STORM_OFF)
StormOnSaga = saga_workflow(STORM_ON)
RatedSaga = saga_workflow(RATED_SAGA)
NarrowSaga = saga_workflow(NARROW_SAGA)
FreeSaga = saga_workflow(FREE)
SAGAS = [
    OutageSaga,
    RefusingSaga,
    BudgetSaga,
    OptOutSaga,
    HeldSaga,
    HandHeldSaga,
    HoldMeSaga,
    PickySaga,
    FlakySaga,
    UndoOpenSaga,
]
