"""Transfers on the example ledger that hold their accounts for a while (``hold_seconds``),
with and without exclusive keys; few imports: the sandbox re-imports this module."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from datetime import timedelta

from pydantic import BaseModel
from temporalio import activity, workflow
from temporalio.exceptions import ApplicationError

from sagaloom import Activity, ChildSaga, Saga, Step, StepContext, Timer, saga_workflow

with workflow.unsafe.imports_passed_through():
    from activities.ledger import Entry, Move, credit, debit, reverse


class Transfer(BaseModel):
    transfer_id: str
    source: str
    target: str
    amount_cents: int
    hold_seconds: float = 0
    gated: bool = False
    """Half done until the test opens this transfer's gate (:data:`GATES`)."""


def _source(ctx: StepContext[Transfer]) -> Move:
    return Move(account=ctx.input.source, amount_cents=ctx.input.amount_cents)


def _target(ctx: StepContext[Transfer]) -> Move:
    return Move(account=ctx.input.target, amount_cents=ctx.input.amount_cents)


def _hold(ctx: StepContext[Transfer]) -> timedelta:
    return timedelta(seconds=ctx.input.hold_seconds)


def _accounts(t: Transfer) -> list[str]:
    return [f"account:{t.source}", f"account:{t.target}"]


STEPS = [
    Step("debit", Activity(debit, arg=_source), compensation=Activity(reverse, arg=_source),
         output=Entry),
    Step("hold", Timer(_hold)),  # half done meanwhile: debited, not yet credited
    Step("credit", Activity(credit, arg=_target), compensation=Activity(reverse, arg=_target),
         output=Entry),
]  # fmt: skip

PLAIN = Saga(name="PlainTransferSaga", input=Transfer, key=lambda t: t.transfer_id, steps=STEPS)
"""No isolation: another transfer can read this one half done."""
EXCLUSIVE = Saga(
    name="ExclusiveTransferSaga",
    input=Transfer,
    key=lambda t: t.transfer_id,
    steps=STEPS,
    exclusive=_accounts,
)
"""Transfers sharing an account run one at a time."""
IMPATIENT = dataclasses.replace(
    EXCLUSIVE, name="ImpatientTransferSaga", exclusive_timeout=timedelta(seconds=2)
)
"""Gives up after 2 s of waiting for its accounts."""
LATE = dataclasses.replace(EXCLUSIVE, name="LateTransferSaga", deadline=timedelta(seconds=2))
"""Has 2 s to finish its steps: a long hold runs past its deadline, and it compensates."""
NESTED = Saga(
    name="NestedTransferSaga",
    input=Transfer,
    key=lambda t: t.transfer_id,
    exclusive=_accounts,
    steps=[Step("transfer", ChildSaga(EXCLUSIVE, input=lambda ctx: ctx.input))],
)
"""Holds the accounts and runs a child transfer that takes the same keys."""


@activity.defn(name="test.reverse-refused")
async def refuse_reverse(move: Move) -> None:
    """A reversal the ledger refuses (until an operator steps in)."""
    raise ApplicationError(
        f"reversal of {move.account} refused", type="Refused", non_retryable=True
    )


STUCK = dataclasses.replace(
    EXCLUSIVE,
    name="StuckTransferSaga",
    steps=[
        Step("debit", Activity(debit, arg=_source), compensation=Activity(refuse_reverse,
             arg=_source), output=Entry),
        *STEPS[1:],
    ],
)  # fmt: skip
"""Its debit's reversal is refused: to a frozen account, it parks holding its keys."""

EVENTFUL = dataclasses.replace(EXCLUSIVE, name="EventfulTransferSaga", events=True)
"""Publishes its lifecycle events (``saga.waiting`` among them) to the broker."""

WIDE = dataclasses.replace(
    EXCLUSIVE,
    name="WideTransferSaga",
    exclusive=lambda t: [
        f"account:{t.source}",
        *(f"account:{t.source}-{i:02d}" for i in range(24)),
    ],
)
"""Takes 25 keys: more than ``start_saga`` takes before a start (it asks for the rest)."""

PlainTransferSaga = saga_workflow(PLAIN)
ExclusiveTransferSaga = saga_workflow(EXCLUSIVE)
ImpatientTransferSaga = saga_workflow(IMPATIENT)
NestedTransferSaga = saga_workflow(NESTED)
LateTransferSaga = saga_workflow(LATE)
StuckTransferSaga = saga_workflow(STUCK)
EventfulTransferSaga = saga_workflow(EVENTFUL)
WideTransferSaga = saga_workflow(WIDE)
GATES: dict[str, asyncio.Event] = {}
"""A gated transfer's gate by transfer id: the test opens it (the worker runs in its process)."""


@activity.defn(name="test.hold-until-opened")
async def hold_until_opened(transfer_id: str) -> None:
    """Half done (debited, not credited) until the test opens the gate: a forced interleaving."""
    gate = GATES.setdefault(transfer_id, asyncio.Event())
    while not gate.is_set():
        activity.heartbeat()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(gate.wait(), 0.5)


_GATED_STEPS = [
    STEPS[0],
    Step("gate", Activity(hold_until_opened, arg=lambda ctx: ctx.input.transfer_id),
         when=lambda ctx: ctx.input.gated),
    STEPS[2],
]  # fmt: skip
PLAIN_GATED = dataclasses.replace(PLAIN, name="PlainGatedTransferSaga", steps=_GATED_STEPS)
EXCLUSIVE_GATED = dataclasses.replace(
    EXCLUSIVE, name="ExclusiveGatedTransferSaga", steps=_GATED_STEPS
)
PlainGatedTransferSaga = saga_workflow(PLAIN_GATED)
ExclusiveGatedTransferSaga = saga_workflow(EXCLUSIVE_GATED)

SAGAS = [
    PlainGatedTransferSaga,
    ExclusiveGatedTransferSaga,
    PlainTransferSaga,
    ExclusiveTransferSaga,
    ImpatientTransferSaga,
    NestedTransferSaga,
    LateTransferSaga,
    StuckTransferSaga,
    EventfulTransferSaga,
    WideTransferSaga,
]
ACTIVITIES = [debit, credit, reverse, refuse_reverse, hold_until_opened]
