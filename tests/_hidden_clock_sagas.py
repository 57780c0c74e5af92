"""A saga whose builder reads the clock through a helper: the check follows the call and keeps
this module in the sandbox (re-imported per run, the call refused there). Imports are noted."""

from __future__ import annotations

import time

from pydantic import BaseModel

from sagaloom import Activity, Saga, Step, StepContext, saga_workflow
from tests._import_log import IMPORTS
from tests._impure_sagas import stamp

IMPORTS.append(__name__)


class Memo(BaseModel):
    memo_id: str


def _seconds() -> float:
    return time.time()


def _text(ctx: StepContext[Memo]) -> str:
    return f"{ctx.input.memo_id} at {_seconds()}"


HIDDEN = Saga(name="HiddenClockSaga", input=Memo, key=lambda m: m.memo_id,
              steps=[Step("stamp", Activity(stamp, arg=_text))])  # fmt: skip
HiddenClockSaga = saga_workflow(HIDDEN)
