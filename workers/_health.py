"""Liveness and readiness endpoints of a worker process, for orchestrators.

``GET /healthz`` answers 200 while the process runs; ``GET /readyz`` answers 200 once the worker
polls its task queue and 503 before that and while it shuts down.
"""

from __future__ import annotations

import asyncio

__all__ = ["HealthServer"]


class HealthServer:
    """A minimal HTTP/1.1 server on asyncio streams; nothing but two GET routes."""

    def __init__(self, address: str) -> None:
        """Prepare a server bound to ``host:port`` (not started yet)."""
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
            while (await asyncio.wait_for(reader.readline(), 5)) not in (b"\r\n", b"\n", b""):
                pass
            parts = request.decode("latin-1").split()
            path = parts[1] if len(parts) > 1 else ""
            if path == "/healthz":
                status, body = "200 OK", "ok"
            elif path == "/readyz":
                status, body = (
                    ("200 OK", "ready") if self.ready else ("503 Service Unavailable", "not ready")
                )
            else:
                status, body = "404 Not Found", "not found"
            writer.write(
                f"HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {len(body)}\r\n"
                f"Connection: close\r\n\r\n{body}".encode()
            )
            await writer.drain()
        except (TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()
