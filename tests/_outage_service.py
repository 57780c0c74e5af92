"""A participant that can go down: answering, answering 503, or refusing connections."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from sagaloom.participants import IDEMPOTENCY_HEADER
from sagaloom.server import free_port


@dataclass
class Call:
    at: float
    method: str
    path: str
    key: str | None
    status: int


@dataclass
class FlakyService:
    """Charges once per key while up; ``mode`` ``"503"`` answers every call with 503, ``"422"``
    refuses every charge, ``"500"`` fails every charge (a fault, not an outage), ``"flaky"``
    answers every 4th charge with 503 (a blip, not an outage)."""

    mode: str = "up"
    port: int = field(default_factory=free_port)
    calls: list[Call] = field(default_factory=list)
    charged: dict[str, int] = field(default_factory=dict)
    """Effects applied, by order id (a repeat of a key must not add one)."""
    refunded: set[str] = field(default_factory=set)
    delay: float = 0.0
    """Seconds each call takes."""
    peak: int = 0
    """The most calls in progress at once."""
    _inflight: int = 0
    _keys: dict[str, dict[str, str]] = field(default_factory=dict)
    _runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        """Go away: connections are refused until :meth:`start`."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def posts(self, since: float = 0.0, path: str = "/charges") -> list[Call]:
        return [c for c in self.calls if c.method == "POST" and c.path == path and c.at >= since]

    def probes(self, since: float = 0.0) -> list[Call]:
        return [c for c in self.calls if c.method == "GET" and c.at >= since]

    async def _handle(self, request: web.Request) -> web.Response:
        self._inflight += 1
        self.peak = max(self.peak, self._inflight)
        try:
            if self.delay:
                await asyncio.sleep(self.delay)
            return await self._answer(request)
        finally:
            self._inflight -= 1

    async def _answer(self, request: web.Request) -> web.Response:
        key = request.headers.get(IDEMPOTENCY_HEADER)
        status = int(self.mode) if self.mode.isdigit() else 200
        if self.mode == "flaky" and request.method == "POST":  # every 4th call: 503
            status = 503 if len(self.posts()) % 4 == 3 else 200
        if status in (422, 500) and request.path != "/charges":
            status = 200  # it refuses or fails charges only: probes and refunds go through
        self.calls.append(Call(time.monotonic(), request.method, request.path, key, status))
        if status != 200:
            return web.json_response({"error": f"mode {self.mode}"}, status=status)
        if request.method == "GET":
            return web.json_response({"ok": True})
        if key is not None and key in self._keys:
            return web.json_response(self._keys[key])  # a repeated key: the first answer
        order = (await request.json())["order_id"]
        if request.path == "/charges":
            self.charged[order] = self.charged.get(order, 0) + 1
            answer = {"id": f"ch-{order}"}
        else:
            self.refunded.add(order)
            answer = {"refunded": order}
        if key is not None:
            self._keys[key] = answer
        return web.json_response(answer)


@contextlib.asynccontextmanager
async def flaky_services(
    names: Iterable[str], **options: Any
) -> AsyncIterator[dict[str, FlakyService]]:
    """One :class:`FlakyService` per name, up for the block (``options``: its fields)."""
    running = {name: FlakyService(**options) for name in names}
    for service in running.values():
        await service.start()
    try:
        yield running
    finally:
        for service in running.values():
            await service.stop()
