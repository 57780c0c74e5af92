"""Sagas whose step builders read the clock or a random number: non-deterministic on purpose.

The workflow sandbox must refuse both, as a user's saga module is written in the README (the
module re-imported inside the sandbox, not passed through).
"""

from __future__ import annotations

import random
from datetime import datetime

from pydantic import BaseModel
from temporalio import activity

from sagaloom import Activity, Saga, Step, StepContext, saga_workflow


class Ticket(BaseModel):
    ticket_id: str


@activity.defn(name="test.stamp")
async def stamp(text: str) -> str:
    """Echo the builder's text (the step runs only if the builder was allowed)."""
    return text


def _clock(ctx: StepContext[Ticket]) -> str:
    return f"{ctx.input.ticket_id} at {datetime.now()}"  # not workflow.now(): refused


def _dice(ctx: StepContext[Ticket]) -> str:
    return f"{ctx.input.ticket_id} rolled {random.random()}"  # not workflow.random(): refused


CLOCK = Saga(name="ClockSaga", input=Ticket, key=lambda t: t.ticket_id,
             steps=[Step("stamp", Activity(stamp, arg=_clock))])  # fmt: skip
DICE = Saga(name="DiceSaga", input=Ticket, key=lambda t: t.ticket_id,
            steps=[Step("stamp", Activity(stamp, arg=_dice))])  # fmt: skip
ClockSaga = saga_workflow(CLOCK)
DiceSaga = saga_workflow(DICE)
