"""A saga whose middle step is an activity with a bug in build 1, fixed in build 2; it holds.

Kept in a module of its own with few imports: the workflow sandbox re-imports it.
"""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel
from temporalio import workflow
from temporalio.common import RetryPolicy

from sagaloom import Activity, Saga, Step, StepDefaults, saga_workflow

with workflow.unsafe.imports_passed_through():
    from tests._versioned_activities import check


class Check(BaseModel):
    order_id: str


VERSIONED = Saga(
    name="VersionedCheckSaga",
    input=Check,
    key=lambda c: c.order_id,
    on_failure="hold",
    defaults=StepDefaults(
        retry=RetryPolicy(initial_interval=timedelta(milliseconds=100), maximum_attempts=2)
    ),
    steps=[Step("check", Activity(check, arg=lambda c: c.input.order_id))],
)
VersionedCheckSaga = saga_workflow(VERSIONED)
