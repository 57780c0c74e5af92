"""Example saga: a money transfer — debit one account, credit another.

Its steps are activities of a participant that runs in the worker (``activities/ledger.py``),
not HTTP calls: ``Activity(fn, arg=...)`` with the function itself, imported through the
sandbox's passthrough. ``saga worker --module workflows.transfer`` registers the activities with
the saga. A credit the target account refuses reverses the debit.
"""

from __future__ import annotations

from pydantic import BaseModel, Field
from temporalio import workflow

from sagaloom import Activity, Saga, Step, StepContext, saga_workflow

with workflow.unsafe.imports_passed_through():
    from activities.ledger import Entry, Move, credit, debit, reverse

__all__ = ["TRANSFER", "TransferInput", "TransferSaga"]


class TransferInput(BaseModel):
    """Money to move between two accounts."""

    transfer_id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    """Business key, unique per transfer."""
    source: str = Field(min_length=1)
    target: str = Field(min_length=1)
    amount_cents: int = Field(gt=0)


def _source(ctx: StepContext[TransferInput]) -> Move:
    return Move(account=ctx.input.source, amount_cents=ctx.input.amount_cents)


def _target(ctx: StepContext[TransferInput]) -> Move:
    return Move(account=ctx.input.target, amount_cents=ctx.input.amount_cents)


TRANSFER: Saga[TransferInput] = Saga(
    name="TransferSaga",
    input=TransferInput,
    key=lambda t: t.transfer_id,
    description="Transfer: debit source, credit target",
    steps=[
        Step(
            "debit",
            Activity(debit, arg=_source),
            compensation=Activity(reverse, arg=_source),
            output=Entry,
        ),
        Step(
            "credit",
            Activity(credit, arg=_target),
            compensation=Activity(reverse, arg=_target),
            output=Entry,
        ),
    ],
)
"""The transfer saga definition."""

TransferSaga = saga_workflow(TRANSFER)
"""The transfer saga's Temporal workflow class (workflow type ``TransferSaga``)."""
