"""A worker process's HTTP endpoint: liveness, readiness, and asynchronous participants' replies.

``GET /healthz`` answers 200 while the process runs; ``GET /readyz`` answers 200 once the worker
polls its task queue, 503 before that and while it stops. ``POST /replies`` takes a participant's
reply and hands it to its saga through the ``participant_reply`` update, whose validator refuses
what the saga does not wait for, so no sender can grow a saga's history.

Served by aiohttp (maintained, asyncio-native, one dependency, with request size and header
limits built in). Answers a participant can act on:

* 202 accepted;
* 400 malformed (not JSON, too deep, wrong fields), 401 missing or wrong token, 408 body too
  slow, 409 not awaited (late, duplicate, or for a step that waits for no reply), 410 the saga
  is finished or unknown, 413 too large — do not retry any of these;
* 503 the worker cannot reach Temporal — retry later.

Error bodies are one JSON line, never a stack trace, and say nothing about which sagas exist
to a sender without a valid token.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from sagaloom._ops._serving import serve
from sagaloom._saga._model import MAX_REPLY_BYTES, Reply
from sagaloom._wire._reply_auth import ReplySigner
from sagaloom.client._intake import ReplyRequest, Verdict, hand_over, read_reply

__all__ = ["MAX_BODY_BYTES", "ReplyRequest", "WorkerEndpoint"]

log = logging.getLogger("sagaloom.endpoint")

MAX_BODY_BYTES = 4 * MAX_REPLY_BYTES
"""Largest request body read (413 beyond it)."""
BODY_TIMEOUT = 5.0
"""Seconds a client gets to send its body (408 after)."""
DELIVERY_TIMEOUT = 15.0
"""Seconds to hand a reply to its saga before answering 503."""


class _OneLineBadRequests(logging.Filter):
    """aiohttp logs a malformed request with a traceback; make it one warning line."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, HttpProcessingError):
            first = str(error.message).strip().splitlines()[0][:200] if error.message else ""
            record.msg, record.args = "%s: %s %s", (record.getMessage(), error.code, first)
            record.exc_info, record.exc_text = None, None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


_QUIET = _OneLineBadRequests()


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


class WorkerEndpoint:
    """The endpoint of one worker process (health, readiness, replies)."""

    def __init__(
        self,
        address: str,
        deliver: Callable[[Reply], Awaitable[None]] | None = None,
        signer: ReplySigner | None = None,
    ) -> None:
        """Prepare (not start) an endpoint bound to ``host:port``.

        Args:
            address: ``host:port`` to bind.
            deliver: Hands a checked reply to its saga; None disables ``/replies``.
            signer: Checks reply tokens (required with ``deliver``).
        """
        host, _, port = address.rpartition(":")
        self._host, self._port = host, int(port)
        self._deliver = deliver
        self._signer = signer
        self._runner: web.AppRunner | None = None
        self.ready = False
        """Set by the worker once it polls, cleared when it stops."""

    async def start(self) -> None:
        """Start listening."""
        server_log = logging.getLogger("aiohttp.server")
        if _QUIET not in server_log.filters:
            server_log.addFilter(_QUIET)
        app = web.Application(client_max_size=MAX_BODY_BYTES)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        if self._deliver is not None:
            app.router.add_post("/replies", self._replies)
        self._runner = await serve(app, self._host, self._port)

    async def stop(self) -> None:
        """Stop listening."""
        if self._runner is not None:
            await self._runner.cleanup()

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def _readyz(self, request: web.Request) -> web.Response:
        return (
            web.Response(text="ready") if self.ready else web.Response(text="not ready", status=503)
        )

    async def _replies(self, request: web.Request) -> web.Response:
        assert self._deliver is not None and self._signer is not None
        try:
            raw = await asyncio.wait_for(request.read(), BODY_TIMEOUT)
        except web.HTTPRequestEntityTooLarge:
            return _error(413, f"body over {MAX_BODY_BYTES} bytes")
        except TimeoutError:
            return _error(408, f"body not received within {BODY_TIMEOUT:g}s")
        intake = read_reply(raw, self._signer)
        if intake.verdict is Verdict.ACCEPTED and intake.reply is not None:
            intake = await hand_over(self._deliver, intake.reply, DELIVERY_TIMEOUT)
        if intake.verdict is Verdict.RETRY:
            log.warning("reply not delivered (%s): the participant is told to retry", intake.why)
        status = _STATUS[intake.verdict]
        if status == 202:
            return web.json_response({"status": "accepted"}, status=202)
        why = {
            Verdict.REFUSED: f"reply not taken: {intake.why}",
            Verdict.RETRY: "the saga cannot take the reply now: retry later",
        }.get(intake.verdict, intake.why)
        return _error(status, why)


_STATUS = {
    Verdict.ACCEPTED: 202,
    Verdict.MALFORMED: 400,
    Verdict.UNAUTHORIZED: 401,
    Verdict.REFUSED: 409,
    Verdict.GONE: 410,
    Verdict.TOO_LARGE: 413,
    Verdict.RETRY: 503,
}
"""The HTTP answer to each verdict (docs/participants.md's table)."""
