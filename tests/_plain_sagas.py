"""Two sagas whose builders read only their input (and workflow.now()): a worker checks them
once and passes this module through the sandbox. Each import of the module is noted."""

from __future__ import annotations

from pydantic import BaseModel
from temporalio import workflow

from sagaloom import Activity, Saga, Step, StepContext, saga_workflow
from tests._import_log import IMPORTS
from tests._impure_sagas import stamp

IMPORTS.append(__name__)


class Note(BaseModel):
    note_id: str


def _text(ctx: StepContext[Note]) -> str:
    return f"{ctx.input.note_id} at {workflow.now().year >= 2000}"  # the workflow's clock: fine


PLAIN = Saga(name="PlainSaga", input=Note, key=lambda n: n.note_id,
             steps=[Step("stamp", Activity(stamp, arg=_text))])  # fmt: skip
OTHER = Saga(name="OtherPlainSaga", input=Note, key=lambda n: n.note_id,
             steps=[Step("stamp", Activity(stamp, arg=lambda c: c.input.note_id))])  # fmt: skip
PlainSaga = saga_workflow(PLAIN)
OtherPlainSaga = saga_workflow(OTHER)
