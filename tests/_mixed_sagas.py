"""A module holding a saga and a hand-written workflow: the check leaves it in the sandbox,
which still guards the hand-written one."""

from __future__ import annotations

from pydantic import BaseModel
from temporalio import workflow

from sagaloom import Activity, Saga, Step, saga_workflow
from tests._impure_sagas import stamp


class Card(BaseModel):
    card_id: str


MIXED = Saga(name="MixedSaga", input=Card, key=lambda c: c.card_id,
             steps=[Step("stamp", Activity(stamp, arg=lambda c: c.input.card_id))])  # fmt: skip
MixedSaga = saga_workflow(MIXED)


@workflow.defn(name="HandWritten")
class HandWritten:
    """A team's own workflow beside the saga."""

    @workflow.run
    async def run(self) -> str:
        """Nothing to it."""
        return "done"
