"""A worker process's HTTP endpoint: liveness and readiness, and participants' replies.

``GET /healthz`` answers 200 while the process runs; ``GET /readyz`` answers 200 once the worker
polls its task queue and 503 before that and while it shuts down. ``POST /replies`` takes an
asynchronous participant's :class:`~sagaloom.Reply` (JSON) and signals it to its saga: the
workflow id is the correlation id up to its last ``:``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable

from pydantic import ValidationError

from sagaloom._model import Reply

__all__ = ["HealthServer"]


class HealthServer:
    """A minimal HTTP/1.1 server on asyncio streams; nothing but two GET routes."""

    def __init__(
        self, address: str, on_reply: Callable[[Reply], Awaitable[None]] | None = None
    ) -> None:
        """Prepare a server bound to ``host:port`` (not started yet).

        Args:
            address: ``host:port`` to bind.
            on_reply: Delivers a participant's reply to its saga; None disables ``/replies``.
        """
        self._on_reply = on_reply
        host, _, port = address.rpartition(":")
        self._host, self._port = host, int(port)
        self._server: asyncio.Server | None = None
        self.ready = False
        """Set by the worker once it polls, cleared when it stops."""

    async def start(self) -> None:
        """Start listening."""
        self._server = await asyncio.start_server(self._handle, self._host, self._port)

    async def stop(self) -> None:
        """Stop listening."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readline(), 5)
            length = 0
            while (line := await asyncio.wait_for(reader.readline(), 5)) not in (
                b"\r\n",
                b"\n",
                b"",
            ):
                name, _, value = line.decode("latin-1").partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value.strip() or 0)
            body_in = await asyncio.wait_for(reader.readexactly(length), 5) if length else b""
            parts = request.decode("latin-1").split()
            method, path = (parts[0], parts[1]) if len(parts) > 1 else ("", "")
            if path == "/healthz":
                status, body = "200 OK", "ok"
            elif path == "/readyz":
                status, body = (
                    ("200 OK", "ready") if self.ready else ("503 Service Unavailable", "not ready")
                )
            elif path == "/replies" and method == "POST" and self._on_reply is not None:
                status, body = await self._reply(body_in)
            else:
                status, body = "404 Not Found", "not found"
            writer.write(
                f"HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {len(body)}\r\n"
                f"Connection: close\r\n\r\n{body}".encode()
            )
            await writer.drain()
        except (TimeoutError, ConnectionError, asyncio.IncompleteReadError, ValueError):
            pass
        finally:
            writer.close()

    async def _reply(self, raw: bytes) -> tuple[str, str]:
        assert self._on_reply is not None
        try:
            reply = Reply.model_validate(json.loads(raw or b"null"))
        except (ValueError, ValidationError) as err:
            return "400 Bad Request", f"not a reply: {err}"
        try:
            await self._on_reply(reply)
        except Exception as err:  # no such saga, or Temporal unreachable: the caller retries
            return "503 Service Unavailable", f"reply not delivered: {err}"
        return "202 Accepted", "accepted"
