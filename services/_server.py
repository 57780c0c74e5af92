"""The demo participants' HTTP servers: FastAPI apps on the participant toolkit, under uvicorn.

Each service is a :class:`~sagaloom.service.SagaService` on its own SQLite file: the toolkit
keeps every ``Idempotency-Key`` with its first answer in the transaction of the handler's
writes, answers an undo of something never done with a tombstone and refuses the late call
(409), and sends the hotels' asynchronous confirmations from its outbox. What is left here is
the business (:mod:`services._catalog`) and the demo's test switches. Endpoints of a service
with resource ``R`` and undo endpoint ``U``:

* ``POST /R`` (``Idempotency-Key`` required): apply the effect for the body's business key,
  once; a business key already applied is answered with its record, one already undone is
  refused (409).
* ``POST /R/U`` (key ``<forward key>:compensate``): undo what the forward call did.
* ``GET /R/<key>``: the record; ``GET /_admin/state``: every record, the effect log, counters,
  the calls received and the faults injected; ``POST /sagaloom/saga-ended``: the engine's notice.
* ``POST /_admin/outage`` ``{"seconds": N}``: be down for N seconds: every other request,
  ``GET /health`` included, is answered 503 (counted as ``outage`` in the injected faults).
* ``POST /_admin/faults``: inject a fault; ``DELETE /_admin/faults``: clear them (``?match=
  <key>``: those of one key). A fault is
  ``{"op": "do"|"undo", "match": "<key>"|"*", "mode": MODE, "times": N|null, "status": 503,
  "delay": 2.0, "rate": 1.0, "seed": 0}`` with MODE ``error``, ``reject``, ``slow``, ``drop``
  (applies the effect, then closes the connection without a complete answer), ``garble`` or
  ``empty`` (applies it, then answers 200 with a body that is not JSON, or none), ``redirect``
  (applies it, then answers ``303 See Other``); ``rate`` below 1 hits that share of the calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import logging
import random
import socket
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from sagaloom.participants import IDEMPOTENCY_HEADER
from sagaloom.service import Answer, CommandInfo, Refused, SagaService, sqlite_engine
from services._catalog import CATALOG, Rejection, ServiceSpec
from services._store import METADATA, Books, Store
from services._warehouse import Warehouse

__all__ = ["Fault", "Participant", "RunningServices", "serve"]

MAX_BODY = 256 * 1024
"""Largest request body a demo participant reads."""
DRAIN_LIMIT = 4 * 1024 * 1024
"""An oversized body up to this size is read and dropped before the 413 (then: closed)."""
MAX_IN_FLIGHT = 48
"""Commands a service works on at once; past it, 429 with ``Retry-After: 1`` (nothing done).

Callers that time out leave their request running here; without a bound, a burst of retries
would queue faster than the service answers them, and it would answer none in time."""

_TRACE: contextvars.ContextVar[str | None] = contextvars.ContextVar("trace", default=None)
"""The ``traceparent`` of the call being handled, for the effect log."""


@dataclass
class Fault:
    """An injected fault."""

    op: str
    match: str
    mode: str
    times: int | None = None
    status: int = 503
    delay: float = 2.0
    rate: float = 1.0
    seed: int = 0
    _rng: random.Random = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def matches(self, op: str, key: str) -> bool:
        """Whether this fault applies to ``op`` on business key ``key`` (and consume one use).

        With ``rate`` below 1 it applies to that share of matching calls (seeded, repeatable).
        """
        if self.op != op or self.match not in ("*", key) or self.times == 0:
            return False
        if self.rate < 1 and self._rng.random() >= self.rate:
            return False
        if self.times is not None:
            self.times -= 1
        return True


@dataclass
class Participant:
    """A participant's test switches: injected faults and outages."""

    spec: ServiceSpec
    faults: list[Fault] = field(default_factory=list)
    injected: dict[str, int] = field(default_factory=dict)
    down_until: float = 0.0
    """``time.monotonic()`` until which the service is down (``/_admin/outage``)."""
    in_flight: int = 0
    """Commands being worked on now (see :data:`MAX_IN_FLIGHT`)."""
    received: list[tuple[str, str, str]] = field(default_factory=list)
    """Calls received (op, business key, idempotency key) not yet written to the store."""

    def down(self) -> bool:
        """Whether the service is down now (a call that finds it so is counted)."""
        if time.monotonic() >= self.down_until:
            return False
        self.injected["outage"] = self.injected.get("outage", 0) + 1
        return True

    def fault(self, op: str, key: str) -> Fault | None:
        """The first injected fault that applies, if any (counted in ``injected``)."""
        fault = next((f for f in self.faults if f.matches(op, key)), None)
        if fault is not None:
            self.injected[fault.mode] = self.injected.get(fault.mode, 0) + 1
        return fault


def business(
    spec: ServiceSpec, service: SagaService
) -> tuple[Callable[..., Awaitable[Any]], Callable[..., Awaitable[Any]]]:
    """The service's action and compensation: ordinary typed handlers for the toolkit."""

    async def do(body: BaseModel, tx: AsyncSession, command: CommandInfo) -> Answer:
        fields: dict[str, Any] = body.model_dump()
        key = str(fields[spec.key_field])
        record = await Books.record(tx, key)
        if record is not None and record["status"] == "undone":
            raise Refused(f"{key} was already cancelled", status=409)
        if record is not None:  # applied under another key: the same effect
            return Answer.json({"id": record["id"], spec.key_field: key, "status": "active"})
        try:
            if spec.check:
                await spec.check(tx, fields)
        except Rejection as rejected:
            raise Refused(rejected.reason, status=rejected.status) from None
        effect_id = await Books.next_id(tx, spec.id_prefix)
        await Books.put(tx, key, effect_id, "active", fields)
        if spec.apply:
            await spec.apply(tx, fields, +1)
        await Books.log(tx, "do", key, command.key, _TRACE.get())
        if spec.asynchronous and service.relay.reply_urls and command.reply_token:
            confirmed = {"id": effect_id, spec.key_field: key, "status": "confirmed"}
            await service.reply(tx, command, confirmed)  # sent once this commits
            return Answer.json({"id": effect_id, spec.key_field: key, "status": "pending"}, 202)
        return Answer.json({"id": effect_id, spec.key_field: key, "status": "active"}, 201)

    async def undo(body: BaseModel, tx: AsyncSession, command: CommandInfo) -> dict[str, str]:
        key = str(getattr(body, spec.key_field))
        record = await Books.record(tx, key)
        if record is not None and record["status"] == "active":
            await Books.put(tx, key, record["id"], "undone", record["payload"])
            if spec.apply:
                await spec.apply(tx, record["payload"], -1)
            await Books.log(tx, "undo", key, command.key, _TRACE.get())
        return {spec.key_field: key, "status": "undone"}

    # Bodies built per service: annotate with the classes (the names are local to this function)
    do.__annotations__["body"], undo.__annotations__["body"] = spec.action_body(), spec.undo_body()
    return do, undo


class _Front:
    """What stands before the toolkit's endpoint: outages, faults, the calls-received log."""

    def __init__(
        self,
        participant: Participant,
        service: SagaService,
        op: str,
        endpoint: Callable[[Request], Awaitable[Response]],
    ) -> None:
        self.participant, self.service, self.op, self.endpoint = participant, service, op, endpoint

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        raw = await _bounded_body(request)
        if raw is None:  # refused and closed: the unread rest must not be taken for a request
            await _reply(413, {"error": f"body over {MAX_BODY} bytes"}, close=True)(
                scope, receive, send
            )
            return
        if self.participant.down():
            await _reply(503, {"error": "down (injected outage)"})(scope, receive, send)
            return
        if self.participant.in_flight >= MAX_IN_FLIGHT:  # shed load: nothing done, come back
            busy = _reply(429, {"error": "busy: try again shortly"})
            busy.headers["Retry-After"] = "1"
            await busy(scope, receive, send)
            return
        self.participant.in_flight += 1
        try:
            await self._serve(request, scope, raw, receive, send)
        finally:
            self.participant.in_flight -= 1

    async def _serve(
        self, request: Request, scope: Scope, raw: bytes, receive: Receive, send: Send
    ) -> None:
        fault = await self._note(request, raw)
        if fault is not None and fault.mode == "slow":
            await asyncio.sleep(fault.delay)
        elif fault is not None and fault.mode in ("error", "reject"):
            status = fault.status if fault.mode == "error" else (fault.status or 409)
            await _reply(status, {"error": f"injected {fault.mode}"})(scope, receive, send)
            return

        async def replay() -> dict[str, Any]:
            return {"type": "http.request", "body": raw, "more_body": False}

        _TRACE.set(request.headers.get("traceparent"))
        response = await self.endpoint(Request(scope, replay))
        if fault is not None and fault.mode in ("garble", "empty"):
            # The effect applied, but the answer cannot be read: not JSON, or no body at all.
            data = b"<html>502 upstream confused</html>" if fault.mode == "garble" else b""
            response = Response(data, 200, media_type="text/html")
        elif fault is not None and fault.mode == "redirect":
            # The effect applied, then a 303 to where the result can be read (not followed).
            status = fault.status if 300 <= fault.status < 400 else 303
            response = Response(
                b"", status, headers={"Location": f"/{self.participant.spec.resource}/result"}
            )
        elif fault is not None and fault.mode == "drop":
            # The effect applied, then the connection closes before the answer is complete.
            headers = [(b"content-type", b"application/json"), (b"content-length", b"64")]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            return
        await response(scope, receive, send)

    async def _note(self, request: Request, raw: bytes) -> Fault | None:
        """Log the call as received and pick its fault, when it names a business key."""
        idem = request.headers.get(IDEMPOTENCY_HEADER)
        try:
            body = json.loads(raw or b"null")
        except (ValueError, RecursionError):
            return None
        key = body.get(self.participant.spec.key_field) if isinstance(body, dict) else None
        if not idem or not isinstance(key, str):
            return None
        self.participant.received.append((self.op, key, idem[:512]))
        return self.participant.fault(self.op, key)


async def _bounded_body(request: Request) -> bytes | None:
    """The body, or None when it is over :data:`MAX_BODY` (read away up to the drain limit)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > DRAIN_LIMIT:
        return None
    raw, total = bytearray(), 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > DRAIN_LIMIT:
            break
        if total <= MAX_BODY:  # past it: read on (to the drain limit), so the client hears 413
            raw += chunk
    return bytes(raw) if total <= MAX_BODY else None


def _reply(status: int, body: Any, *, close: bool = False) -> Response:
    return JSONResponse(body, status, headers={"Connection": "close"} if close else None)


async def _keep_received(participant: Participant, service: SagaService) -> None:
    """Write the calls received to the store every 0.2 s, in one transaction.

    A burst of calls costs one write, not one each; a SIGKILL loses at most the last 0.2 s.
    """
    while True:
        await asyncio.sleep(0.2)
        await _flush_received(participant, service)


async def _flush_received(participant: Participant, service: SagaService) -> None:
    batch, participant.received = participant.received, []
    if not batch:
        return
    try:
        async with service.inbox.sessions() as tx, tx.begin():
            await Books.received_all(tx, batch)
    except OperationalError:  # busy: next time
        participant.received[:0] = batch


def _lifespan(participant: Participant, service: SagaService) -> Any:
    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        async with service.lifespan(app):
            keeper = asyncio.create_task(_keep_received(participant, service))
            try:
                yield
            finally:
                keeper.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await keeper
                await _flush_received(participant, service)

    return lifespan


def build_app(
    spec: ServiceSpec, data_dir: Path, reply_urls: tuple[str, ...] = ()
) -> tuple[FastAPI, Participant]:
    """One demo participant: a FastAPI app on the toolkit, with its own SQLite file."""
    store_path = data_dir / f"{spec.name}.sqlite3"
    store = Store(store_path)  # creates the tables; reads them for /_admin/state
    service = SagaService(
        sqlite_engine(store_path), metadata=METADATA, reply_urls=reply_urls, max_body_bytes=MAX_BODY
    )
    participant = Participant(spec)
    app = FastAPI(
        title=f"demo {spec.name}", lifespan=_lifespan(participant, service), openapi_url=None
    )
    do, undo = business(spec, service)
    app.router.routes += [  # ASGI apps: they answer before, and around, the toolkit's endpoint
        Route(f"/{spec.resource}", _Front(participant, service, "do", service.action(do)),
              methods=["POST"]),
        Route(f"/{spec.resource}/{spec.undo}",
              _Front(participant, service, "undo", service.compensation(undo)), methods=["POST"]),
    ]  # fmt: skip
    app.add_route("/sagaloom/saga-ended", service.saga_ended, methods=["POST"])

    @app.get("/health")
    async def health() -> Response:
        if participant.down():
            return _reply(503, {"error": "down (injected outage)"})
        return _reply(200, {"service": spec.name, "ok": True})

    @app.get("/_admin/state")
    async def state() -> dict[str, Any]:
        await _flush_received(participant, service)
        return {**await asyncio.to_thread(store.dump), "injected": dict(participant.injected)}

    @app.post("/_admin/outage")
    async def outage(request: Request) -> Response:
        body = await _json_of(request)
        seconds = body.get("seconds") if isinstance(body, dict) else None
        if not isinstance(seconds, int | float) or not 0 <= seconds <= 3600:
            return _reply(400, {"error": 'body must be {"seconds": 0..3600}'})
        participant.down_until = time.monotonic() + seconds
        return _reply(200, {"down_for": seconds})

    @app.post("/_admin/faults")
    async def add_fault(request: Request) -> Response:
        body = await _json_of(request)
        try:
            participant.faults.append(Fault(**body))
        except TypeError as err:
            return _reply(400, {"error": str(err)})
        return _reply(201, {"fault": body})

    @app.delete("/_admin/faults")
    async def clear_faults(match: str | None = None) -> dict[str, int]:
        if match is None:
            participant.faults.clear()
        else:  # only those of one business key (a fix deployed for it)
            participant.faults[:] = [f for f in participant.faults if f.match != match]
        return {"faults": len(participant.faults)}

    @app.get(f"/{spec.resource}/{{key}}")
    async def record(key: str) -> Response:
        if participant.down():
            return _reply(503, {"error": "down (injected outage)"})
        found = await asyncio.to_thread(store.record, key)
        return _reply(200, found) if found else _reply(404, {"error": "not found"})

    return app, participant


async def _json_of(request: Request) -> Any:
    raw = await _bounded_body(request)
    try:
        return json.loads(raw or b"null")
    except (ValueError, RecursionError):
        return None


class _QuietDrops(logging.Filter):
    """Keep uvicorn's line for a ``drop`` fault (an answer left incomplete on purpose) out."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "without completing response" not in record.getMessage()


class RunningServices:
    """Demo participant servers running on loopback, in one background thread."""

    def __init__(
        self,
        host: str,
        apps: dict[str, FastAPI],
        ports: dict[str, int],
        warehouse: Warehouse | None = None,
    ) -> None:
        self._host = host
        self.warehouse = warehouse
        """The event-driven participant (over NATS), when started."""
        self._sockets = {name: _listen(host, ports.get(name, 0)) for name in apps}
        logging.getLogger("uvicorn.error").addFilter(_QuietDrops())
        self._servers = [
            uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False,
                                          timeout_keep_alive=10, lifespan="on"))
            for app in apps.values()
        ]  # fmt: skip
        self._failed: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="svc-demo", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 30
        while not all(s.started for s in self._servers) and self._thread.is_alive():
            if time.monotonic() > deadline:
                raise RuntimeError("the demo services did not start within 30 s")
            time.sleep(0.02)
        if not self._thread.is_alive():
            raise RuntimeError(f"the demo services did not start: {self._failed!r}")

    def _main(self) -> None:
        async def run() -> None:
            sockets = list(self._sockets.values())
            pairs = zip(self._servers, sockets, strict=True)
            await asyncio.gather(*(server.serve(sockets=[sock]) for server, sock in pairs))

        try:
            asyncio.run(run())
        except BaseException as err:
            self._failed = err

    @property
    def urls(self) -> dict[str, str]:
        """Service name to base URL."""
        return {
            name: f"http://{self._host}:{sock.getsockname()[1]}"
            for name, sock in self._sockets.items()
        }

    def close(self) -> None:
        """Stop the servers (their lifespans stop the relays) and the warehouse."""
        if self.warehouse is not None:
            self.warehouse.close()
        for server in self._servers:
            server.should_exit = True
        self._thread.join(15)
        for sock in self._sockets.values():
            sock.close()


def _listen(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(256)
    sock.set_inheritable(True)
    return sock


def serve(
    data_dir: Path,
    *,
    host: str = "127.0.0.1",
    ports: dict[str, int] | None = None,
    specs: tuple[ServiceSpec, ...] = CATALOG,
    reply_urls: tuple[str, ...] = (),
    nats_url: str | None = None,
) -> RunningServices:
    """Start every demo participant, each on its own port with its own SQLite file.

    Args:
        data_dir: Folder for the SQLite stores (``<service>.sqlite3``).
        host: Loopback address to bind.
        ports: Port per service name; missing or 0 picks a free port.
        specs: The services to start.
        reply_urls: The engine's reply endpoints (``http://worker:port/replies``), where the
            asynchronous participants (hotels) confirm; without them they answer at once.
        nats_url: Also run the warehouse, which takes its commands over NATS JetStream.

    Returns:
        The running services; call ``close()`` to stop them.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    apps = {spec.name: build_app(spec, data_dir, reply_urls)[0] for spec in specs}
    warehouse = None
    if nats_url:
        warehouse = Warehouse(nats_url, data_dir / "warehouse.sqlite3").start()
    return RunningServices(host, apps, ports or {}, warehouse)
