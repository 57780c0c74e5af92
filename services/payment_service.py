"""A complete payment participant on the toolkit: ``uvicorn services.payment_service:app``."""

import os

from fastapi import FastAPI
from pydantic import BaseModel, Field
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from sagaloom.service import Refused, SagaService, sqlite_engine


class Base(DeclarativeBase):
    """The service's own tables."""


class Payment(Base):
    """A charge, and whether it was refunded."""

    __tablename__ = "payments"
    order_id: Mapped[str] = mapped_column(primary_key=True)
    cents: Mapped[int]
    status: Mapped[str]


class Charge(BaseModel):
    """What the saga's charge-payment step sends."""

    order_id: str = Field(min_length=1, max_length=64)
    amount_cents: int = Field(gt=0)


class OrderRef(BaseModel):
    """What its compensation sends."""

    order_id: str


engine = sqlite_engine(os.environ.get("PAYMENTS_DB", "payments.db"))
service = SagaService(engine, metadata=Base.metadata)
app = FastAPI(lifespan=service.lifespan)


@app.post("/charges")
@service.action
async def charge(body: Charge, tx: AsyncSession) -> dict[str, str]:
    """Charge once per Idempotency-Key, in the transaction that stores the key and answer."""
    if body.amount_cents > 100_000:
        raise Refused("card declined: amount over limit", status=402)
    tx.add(Payment(order_id=body.order_id, cents=body.amount_cents, status="charged"))
    return {"id": f"ch-{body.order_id}", "order_id": body.order_id}


@app.post("/charges/refund")
@service.compensation
async def refund(body: OrderRef, tx: AsyncSession) -> dict[str, str]:
    """Refund what the charge with this saga's key did (not called if it never happened)."""
    paid = update(Payment).where(Payment.order_id == body.order_id)
    await tx.execute(paid.values(status="refunded"))
    return {"refunded": body.order_id}
