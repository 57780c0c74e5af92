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
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from temporalio.client import WorkflowUpdateFailedError
from temporalio.service import RPCError, RPCStatusCode

from sagaloom._model import MAX_REPLY_BYTES, Reply, reply_problem
from sagaloom._reply_auth import ReplySigner

__all__ = ["MAX_BODY_BYTES", "ReplyRequest", "WorkerEndpoint"]

log = logging.getLogger("sagaloom.endpoint")

MAX_BODY_BYTES = 4 * MAX_REPLY_BYTES
"""Largest request body read (413 beyond it)."""
BODY_TIMEOUT = 5.0
"""Seconds a client gets to send its body (408 after)."""
DELIVERY_TIMEOUT = 15.0
"""Seconds to hand a reply to its saga before answering 503."""


class ReplyRequest(BaseModel):
    """The body of ``POST /replies``."""

    model_config = ConfigDict(extra="forbid", strict=True)

    correlation_id: str = Field(min_length=3, max_length=600)
    """The command's ``Sagaloom-Correlation-Id`` header."""
    token: str = Field(min_length=1, max_length=200)
    """The command's ``Sagaloom-Reply-Token`` header."""
    ok: bool
    """Whether the participant did what it was asked (no default: say it)."""
    data: dict[str, Any] = Field(default_factory=dict)
    """What it reports (becomes the step's output)."""
    reason: str = Field(default="", max_length=1000)
    """Why it said no."""


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
        self._runner = web.AppRunner(
            app,
            access_log=None,
            handle_signals=False,
            keepalive_timeout=5,
            max_line_size=4096,
            max_field_size=4096,
            max_headers=64,
            shutdown_timeout=1,
        )
        await self._runner.setup()
        await web.TCPSite(self._runner, self._host, self._port).start()

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
        try:
            parsed = json.loads(raw)
        except (ValueError, RecursionError):
            return _error(400, "body is not JSON (or is nested too deeply)")
        try:
            body = ReplyRequest.model_validate(parsed)
        except ValidationError as err:
            fields = ", ".join(".".join(str(p) for p in e["loc"]) or "<body>" for e in err.errors())
            return _error(400, f"not a reply; check: {fields}")
        if not self._signer.verify(body.correlation_id, body.token):
            return _error(401, "missing or wrong reply token")
        reply = Reply(
            correlation_id=body.correlation_id, ok=body.ok, data=body.data, reason=body.reason
        )
        problem = reply_problem(reply)
        if problem is not None:
            return _error(413 if "bytes" in problem else 400, problem)
        return await self._hand_over(reply)

    async def _hand_over(self, reply: Reply) -> web.Response:
        assert self._deliver is not None
        try:
            await asyncio.wait_for(self._deliver(reply), DELIVERY_TIMEOUT)
        except WorkflowUpdateFailedError as err:
            cause = getattr(err.cause, "message", None) or str(err.cause or err)
            return _error(409, f"reply not taken: {cause}")
        except RPCError as err:
            if err.status is RPCStatusCode.NOT_FOUND:  # no such saga, or it already ended
                return _error(410, "the saga is finished or unknown")
            # Unreachable, or the saga cannot take updates for now (its workflow task failed or
            # timed out while a worker restarts): the participant must try again later.
            log.warning("reply for %s not delivered: %s", reply.correlation_id, err.message)
            return _error(503, "the saga cannot take the reply now: retry later")
        except (TimeoutError, OSError, RuntimeError) as err:
            log.warning("reply for %s not delivered: %s", reply.correlation_id, err)
            return _error(503, "Temporal is not reachable now: retry later")
        return web.json_response({"status": "accepted"}, status=202)
