"""Participants that answer at once, for the transport benchmark: over HTTP and over NATS.

Both refuse a request whose body says ``"fail": true`` (HTTP 409, or a negative reply) and
otherwise answer ``{"id": ...}``; undo requests are answered the same way.
"""

from __future__ import annotations

import asyncio
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import nats
from nats.js.api import AckPolicy, ConsumerConfig
from nats.js.errors import NotFoundError

from sagaloom.participants import (
    COMMAND_PREFIX,
    COMMANDS_STREAM,
    CORRELATION_HEADER,
    MSG_ID,
    REPLY_SUBJECT,
    REPLY_TO_HEADER,
    TOKEN_HEADER,
)

__all__ = ["EchoHttp", "EchoNats"]


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        status, answer = (409, {"error": "refused"}) if body.get("fail") else (200, {"id": "e-1"})
        data = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *_: Any) -> None:
        pass


class EchoHttp:
    """An HTTP participant on loopback answering every POST at once."""

    def __init__(self) -> None:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        """Its base URL."""
        return f"http://127.0.0.1:{self._server.server_port}"

    def close(self) -> None:
        """Stop it."""
        self._server.shutdown()
        self._server.server_close()


class EchoNats:
    """A broker participant answering every ``sagaloom.cmd.bench.>`` command at once."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop it."""
        self._stop.set()
        self._thread.join(10)

    async def _run(self) -> None:
        nc = await nats.connect(self.url)
        js = nc.jetstream()
        while not self._stop.is_set():
            try:
                await js.stream_info(COMMANDS_STREAM)
                break
            except NotFoundError:
                await asyncio.sleep(0.2)
        config = ConsumerConfig(durable_name="bench-echo", ack_policy=AckPolicy.EXPLICIT)
        sub = await js.pull_subscribe(
            f"{COMMAND_PREFIX}.bench.>", durable="bench-echo", stream=COMMANDS_STREAM, config=config
        )
        while not self._stop.is_set():
            try:
                batch = await sub.fetch(64, timeout=0.2)
            except TimeoutError:
                continue
            for message in batch:
                headers = message.headers or {}
                body = json.loads(message.data or b"null") or {}
                correlation = headers.get(CORRELATION_HEADER, "")
                reply = {
                    "correlation_id": correlation,
                    "token": headers.get(TOKEN_HEADER, ""),
                    "ok": not body.get("fail"),
                    "data": {} if body.get("fail") else {"id": "e-1"},
                    "reason": "refused" if body.get("fail") else "",
                }
                await js.publish(
                    headers.get(REPLY_TO_HEADER, REPLY_SUBJECT),
                    json.dumps(reply).encode(),
                    headers={MSG_ID: f"reply-{correlation}"},
                )
                await message.ack()
        await nc.drain()
