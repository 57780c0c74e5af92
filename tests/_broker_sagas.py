"""A broker saga with a short reply timeout, for the tests that let a reply be late."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

from sagaloom import Step, saga_workflow
from workflows.fulfilment import FULFILMENT

QUICK = dataclasses.replace(
    FULFILMENT,
    name="QuickPackSaga",
    steps=[
        FULFILMENT.steps[0],
        dataclasses.replace(FULFILMENT.steps[1], reply_timeout=timedelta(seconds=3)),
    ],
)
"""The fulfilment saga, waiting only 3 seconds for the warehouse's reply."""
QuickPackSaga = saga_workflow(QUICK)

__all__ = ["QUICK", "QuickPackSaga", "Step"]
