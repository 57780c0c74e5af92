"""A bank on the participant toolkit: debits and refunds, with semantic locks or without.

``uvicorn tests._toolkit_bank:app``; ``BANK_DB`` is its SQLite file; ``BANK_LOCKS=off`` leaves
the locks out (to show the anomaly they prevent). Every account starts with 100.
"""

from __future__ import annotations

import os

from fastapi import FastAPI
from pydantic import BaseModel, Field
from sqlalchemy import Column, Integer, MetaData, String, Table, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from sagaloom.service import CommandInfo, Refused, SagaService, sqlite_engine

metadata = MetaData()
accounts = Table(
    "accounts",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("cents", Integer, nullable=False),
)
LOCKS = os.environ.get("BANK_LOCKS", "on") != "off"


class Debit(BaseModel):
    account: str = Field(min_length=1, max_length=64)
    cents: int = Field(gt=0)


service = SagaService(sqlite_engine(os.environ.get("BANK_DB", "bank.db")), metadata=metadata)
app = FastAPI(lifespan=service.lifespan)
app.post("/sagaloom/saga-ended")(service.saga_ended)


async def balance(tx: AsyncSession, account: str) -> int:
    found = (await tx.execute(select(accounts.c.cents).where(accounts.c.id == account))).first()
    if found is None:
        await tx.execute(insert(accounts).values(id=account, cents=100))
        return 100
    return int(found.cents)


@app.post("/debits")
@service.action
async def debit(body: Debit, tx: AsyncSession, command: CommandInfo) -> dict[str, int]:
    if LOCKS:  # another saga's debit of this account waits until this saga ends
        await service.lock(tx, command, f"account:{body.account}")
    left = await balance(tx, body.account)
    if left < body.cents:
        raise Refused(f"insufficient funds: {left} left", status=409)
    await tx.execute(
        update(accounts).where(accounts.c.id == body.account).values(cents=left - body.cents)
    )
    return {"left": left - body.cents}


@app.post("/debits/refund")
@service.compensation
async def refund(body: Debit, tx: AsyncSession) -> dict[str, int]:
    left = await balance(tx, body.account)
    await tx.execute(
        update(accounts).where(accounts.c.id == body.account).values(cents=left + body.cents)
    )
    return {"left": left + body.cents}


@app.post("/fail")
@service.action
async def fail(body: Debit) -> None:
    raise Refused("the transfer's other leg is refused")
