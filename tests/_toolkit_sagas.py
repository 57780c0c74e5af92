"""Sagas against the toolkit bank (``tests/_toolkit_bank.py``); few imports: the sandbox
re-imports this module."""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel
from temporalio.common import RetryPolicy

from sagaloom import Http, Saga, Step, StepContext, StepDefaults, Timer, saga_workflow

# a debit of a held account is answered 429 until the holder ends: retried for a while
PATIENT = StepDefaults(
    retry=RetryPolicy(
        initial_interval=timedelta(milliseconds=500),
        backoff_coefficient=1.0,
        maximum_attempts=80,
    )
)


class Pay(BaseModel):
    account: str
    cents: int
    hold_seconds: float = 0


def _debit(ctx: StepContext[Pay]) -> dict[str, object]:
    return {"account": ctx.input.account, "cents": ctx.input.cents}


def _hold(ctx: StepContext[Pay]) -> timedelta:
    return timedelta(seconds=ctx.input.hold_seconds)


DEBIT = Step(
    "debit",
    Http("bank", "POST", "/debits", body=_debit),
    compensation=Http("bank", "POST", "/debits/refund", body=lambda u: _debit(u)),
)
HOLD = Step("hold", Timer(_hold))

TRANSFER = Saga(  # no notice: its refund alone must free the account
    name="LockedTransferSaga",
    input=Pay,
    defaults=PATIENT,
    steps=[DEBIT, HOLD, Step("credit", Http("bank", "POST", "/fail", body=_debit))],
)
"""Debits, holds, then its other leg is refused: the debit is refunded (half done meanwhile)."""
PAYMENT = Saga(
    name="LockedPaymentSaga",
    input=Pay,
    defaults=PATIENT,
    notify_participants=True,
    steps=[DEBIT, HOLD],
)
"""Debits (then holds, if asked): completes."""

LockedTransferSaga = saga_workflow(TRANSFER)
LockedPaymentSaga = saga_workflow(PAYMENT)
SAGAS = [LockedTransferSaga, LockedPaymentSaga]
