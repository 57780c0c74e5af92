"""The order saga with the same step inserted *with* a patch: old histories still replay."""

from __future__ import annotations

import dataclasses

from sagaloom import saga_workflow
from tests._changed_unpatched import FRAUD_CHECK
from workflows.order import ORDER

ORDER_V2 = dataclasses.replace(
    ORDER,
    steps=[
        ORDER.steps[0],
        dataclasses.replace(FRAUD_CHECK, patch="add-fraud-check"),
        *ORDER.steps[1:],
    ],
)
OrderSaga = saga_workflow(ORDER_V2)
