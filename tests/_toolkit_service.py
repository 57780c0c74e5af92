"""A hotel on the participant toolkit that confirms bookings later, through its outbox.

``uvicorn tests._toolkit_service:app``; ``HOTEL_DB`` is its SQLite file, ``HOTEL_REPLY_URLS``
the comma-separated reply endpoints. ``POST /bookings`` books and answers 202 at once; the
confirmation is a reply written to the outbox in the same transaction, delivered by the relay.
"""

from __future__ import annotations

import os

from fastapi import FastAPI
from pydantic import BaseModel
from sqlalchemy import Column, Integer, MetaData, String, Table, insert, update
from sqlalchemy.ext.asyncio import AsyncSession

from sagaloom.service import Answer, CommandInfo, SagaService, sqlite_engine

metadata = MetaData()
bookings = Table(
    "bookings",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("trip_id", String(64), nullable=False),
    Column("status", String(16), nullable=False),
)


class Booking(BaseModel):
    trip_id: str


urls = [u for u in os.environ.get("HOTEL_REPLY_URLS", "").split(",") if u]
service = SagaService(
    sqlite_engine(os.environ.get("HOTEL_DB", "hotel.db")), metadata=metadata, reply_urls=urls
)
app = FastAPI(lifespan=service.lifespan)


@app.post("/bookings")
@service.action
async def book(body: Booking, tx: AsyncSession, command: CommandInfo) -> Answer:
    await tx.execute(insert(bookings).values(trip_id=body.trip_id, status="booked"))
    await service.reply(tx, command, {"id": f"htl-{body.trip_id}", "trip_id": body.trip_id})
    return Answer.json({"trip_id": body.trip_id, "status": "pending"}, 202)


@app.post("/bookings/cancel")
@service.compensation
async def cancel(body: Booking, tx: AsyncSession) -> dict[str, str]:
    booked = update(bookings).where(bookings.c.trip_id == body.trip_id)
    await tx.execute(booked.values(status="cancelled"))
    return {"trip_id": body.trip_id, "status": "cancelled"}
