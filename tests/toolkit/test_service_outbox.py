"""The toolkit's outbox: a reply exists exactly when its work committed, and gets delivered.

On SQLite and on a real PostgreSQL: a rolled-back transaction sends nothing; a committed one is
delivered once; a 503 is retried with back-off, a 4xx is final. Then a real service process is
SIGKILLed between its commit and the reply's delivery, and sends the reply after its restart.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from aiohttp import web

from sagaloom.server import free_port
from sagaloom.service import Outbox, Relay
from tests._helpers import serve_asgi
from tests._postgres import Postgres, engine_of

pytestmark = pytest.mark.integration  # a real PostgreSQL (and processes) per module


class Endpoint:
    """A stand-in for the workers' reply endpoint, on loopback: it records what it is sent."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.replies: list[dict[str, Any]] = []
        self.answers: list[int] = []
        """Statuses to answer, in turn (then 200)."""
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/replies"

    async def start(self) -> Endpoint:
        app = web.Application()
        app.router.add_post("/replies", self._take)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _take(self, request: web.Request) -> web.Response:
        status = self.answers.pop(0) if self.answers else 200
        if status == 200:
            self.replies.append(await request.json())
        return web.json_response({"status": status}, status=status)


@pytest_asyncio.fixture(params=["sqlite", "postgresql"], loop_scope="session")
async def outbox(
    request: pytest.FixtureRequest, tmp_path: Path, postgres: Postgres
) -> AsyncIterator[Outbox]:
    engine = engine_of(request.param, tmp_path, postgres)
    made = Outbox(engine, table=f"outbox_{os.urandom(3).hex()}")
    await made.create_tables()
    yield made
    await engine.dispose()


@pytest_asyncio.fixture(loop_scope="session")
async def endpoint() -> AsyncIterator[Endpoint]:
    running = await Endpoint().start()
    yield running
    await running.stop()


async def test_a_reply_exists_exactly_when_its_transaction_committed(
    outbox: Outbox, endpoint: Endpoint
) -> None:
    relay = Relay(outbox, reply_urls=[endpoint.url])
    with pytest.raises(RuntimeError):
        async with outbox.sessions() as session, session.begin():
            await outbox.add(session, "S-1:book", "tok-1", data={"id": "h-1"})
            raise RuntimeError("the booking failed after the reply was written")
    async with outbox.sessions() as session, session.begin():
        await outbox.add(session, "S-2:book", "tok-2", data={"id": "h-2"})
    assert await relay.deliver_due() == 1 and await relay.deliver_due() == 0
    assert endpoint.replies == [
        {"correlation_id": "S-2:book", "token": "tok-2", "ok": True, "data": {"id": "h-2"},
         "reason": ""},
    ]  # fmt: skip
    assert await outbox.pending() == 0
    await relay.aclose()


async def test_a_503_is_retried_with_back_off_and_a_4xx_is_final(
    outbox: Outbox, endpoint: Endpoint
) -> None:
    relay = Relay(outbox, reply_urls=[endpoint.url])
    endpoint.answers = [503, 503]
    async with outbox.sessions() as session, session.begin():
        await outbox.add(session, "S-3:book", "tok", data={})
    begin = time.monotonic()
    while await outbox.pending():
        await relay.deliver_due()
        await asyncio.sleep(0.1)
        assert time.monotonic() - begin < 10
    assert time.monotonic() - begin >= 1.4  # 0.5 s, then 1 s before the third try
    assert [r["correlation_id"] for r in endpoint.replies] == ["S-3:book"]

    endpoint.answers = [409]  # the engine says no for good (late, forged, duplicate)
    async with outbox.sessions() as session, session.begin():
        await outbox.add(session, "S-4:book", "tok", data={})
    await relay.deliver_due()
    assert await outbox.pending() == 0 and len(endpoint.replies) == 1  # not retried
    await relay.aclose()


def serve(folder: Path, port: int, reply_port: int) -> subprocess.Popen[bytes]:
    env = {"HOTEL_DB": str(folder / "hotel.db"),
           "HOTEL_REPLY_URLS": f"http://127.0.0.1:{reply_port}/replies"}  # fmt: skip
    return serve_asgi("tests._toolkit_service:app", folder, env, port)[0]


async def test_a_reply_committed_before_a_sigkill_is_sent_after_the_restart(
    tmp_path: Path,
) -> None:
    port, reply_port = free_port(), free_port()
    hotel = serve(tmp_path, port, reply_port)  # its reply endpoint is not up yet
    key = {"Idempotency-Key": "TripSaga-t-1:book-hotel", "Sagaloom-Reply-Token": "tok-1"}
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            first = await http.post("/bookings", headers=key, json={"trip_id": "t-1"})
            assert first.status_code == 202
            await asyncio.sleep(10)  # tried at 0, 1, 2, 4, 8 s: next at 16 s; nobody listens
        with sqlite3.connect(tmp_path / "hotel.db") as db:
            waiting = db.execute("SELECT count(*) FROM sagaloom_outbox WHERE NOT done").fetchone()
        assert waiting == (1,)
    finally:
        hotel.send_signal(signal.SIGKILL)
        hotel.wait(10)
    endpoint = await Endpoint(reply_port).start()
    hotel = serve(tmp_path, port, reply_port)  # same database
    try:
        for _ in range(20):  # at once: a restart does not wait out the back-off
            if endpoint.replies:
                break
            await asyncio.sleep(0.1)
        assert endpoint.replies, "not sent within 2 s of the restart"
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            again = await http.post("/bookings", headers=key, json={"trip_id": "t-1"})
        assert again.status_code == 202 and again.content == first.content  # replayed
        await asyncio.sleep(0.5)
    finally:
        hotel.terminate()
        hotel.wait(10)
        await endpoint.stop()
    assert [(r["correlation_id"], r["token"], r["data"]) for r in endpoint.replies] == [
        ("TripSaga-t-1:book-hotel", "tok-1", {"id": "htl-t-1", "trip_id": "t-1"})
    ]  # sent after the restart, once
    with sqlite3.connect(tmp_path / "hotel.db") as db:
        booked = db.execute("SELECT trip_id, status FROM bookings").fetchall()
    assert booked == [("t-1", "booked")]  # one effect
    assert json.loads(first.content) == {"trip_id": "t-1", "status": "pending"}
