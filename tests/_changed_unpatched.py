"""The order saga with a step inserted *without* a patch: must break the recorded histories."""

from __future__ import annotations

import dataclasses

from sagaloom import Http, Step, saga_workflow
from workflows.order import ORDER

FRAUD_CHECK = Step(
    "check-fraud",
    Http("payment", "POST", "/fraud-checks", body=lambda c: {"order_id": c.input.order_id}),
)

ORDER_V2 = dataclasses.replace(ORDER, steps=[ORDER.steps[0], FRAUD_CHECK, *ORDER.steps[1:]])
OrderSaga = saga_workflow(ORDER_V2)
