"""The demo participants' HTTP servers (standard library ``http.server``, one thread per request).

Endpoints of a service with resource ``R`` and undo endpoint ``U``:

* ``POST /R`` (``Idempotency-Key`` required): apply the effect for the body's business key.
  A repeated key returns the first answer and applies nothing twice; a business key that was
  already undone is refused with 409 (the undo arrived first, so the late call must not apply).
* ``POST /R/U``: undo the effect of the body's business key; with no effect yet, record a
  tombstone. Idempotent.
* ``GET /R/<key>``: the record; ``GET /_admin/state``: every record, the effect log, counters.
* ``POST /_admin/outage`` ``{"seconds": N}``: be down for N seconds: every other request,
  ``GET /`` included, is answered 503 (counted as ``outage`` in the injected faults).
* ``POST /_admin/faults``: inject a fault; ``DELETE /_admin/faults``: clear them. A fault is
  ``{"op": "do"|"undo", "match": "<key>"|"*", "mode": MODE, "times": N|null, "status": 503,
  "delay": 2.0, "rate": 1.0, "seed": 0}`` with MODE ``error``, ``reject``, ``slow``, ``drop``
  (applies the effect, then closes the connection without answering), ``garble`` or ``empty``
  (applies it, then answers 200 with a body that is not JSON, or none), ``redirect`` (applies
  it, then answers ``303 See Other``); ``rate`` below 1 hits that share of the matching calls.
"""

from __future__ import annotations

import json
import random
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from services._catalog import CATALOG, Rejection, ServiceSpec
from services._store import Store
from services._warehouse import Warehouse

__all__ = ["Fault", "Participant", "RunningServices", "serve"]


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
    """A participant's state: its spec, its store and its injected faults."""

    spec: ServiceSpec
    store: Store
    faults: list[Fault] = field(default_factory=list)
    faults_lock: threading.Lock = field(default_factory=threading.Lock)
    injected: dict[str, int] = field(default_factory=dict)
    reply_urls: tuple[str, ...] = ()
    down_until: float = 0.0
    """``time.monotonic()`` until which the service is down (``/_admin/outage``)."""

    def down(self) -> bool:
        """Whether the service is down now (a call that finds it so is counted)."""
        if time.monotonic() >= self.down_until:
            return False
        with self.faults_lock:
            self.injected["outage"] = self.injected.get("outage", 0) + 1
        return True

    def fault(self, op: str, key: str) -> Fault | None:
        """The first injected fault that applies, if any (counted in ``injected``)."""
        with self.faults_lock:
            fault = next((f for f in self.faults if f.matches(op, key)), None)
            if fault is not None:
                self.injected[fault.mode] = self.injected.get(fault.mode, 0) + 1
            return fault

    def _once(self, idem: str, apply: Callable[[], tuple[int, Any]]) -> tuple[int, Any]:
        """Answer a repeated idempotency key with its first answer; otherwise apply and keep it."""
        with self.store.lock:
            replayed = self.store.replay(idem)
            if replayed is not None:
                return replayed
            answer = apply()
            self.store.remember(idem, *answer)
            return answer

    def do(
        self,
        body: dict[str, Any],
        idem: str,
        trace: str | None = None,
        reply: tuple[str, str] | None = None,
    ) -> tuple[int, Any]:
        """Apply the effect of ``body`` once per idempotency key and business key.

        ``reply``: the command's correlation id and reply token, for an asynchronous answer.
        """
        spec, store = self.spec, self.store
        key = str(body[spec.key_field])

        def apply() -> tuple[int, Any]:
            record = store.record(key)
            if record is not None and record["status"] == "undone":
                return 409, {"error": f"{key} was already cancelled"}
            if record is not None:
                return 200, {"id": record["id"], spec.key_field: key, "status": "active"}
            try:
                if spec.check:
                    spec.check(store, body)
            except Rejection as rejected:
                return rejected.status, {"error": rejected.reason}
            effect_id = store.next_id(spec.id_prefix)
            store.put(key, effect_id, "active", body)
            if spec.apply:
                spec.apply(store, body, +1)
            store.log("do", key, idem, trace)
            if spec.asynchronous and self.reply_urls and reply is not None:
                confirmation = {"id": effect_id, spec.key_field: key, "status": "confirmed"}
                self.confirm_later(*reply, confirmation)
                return 202, {"id": effect_id, spec.key_field: key, "status": "pending"}
            return 201, {"id": effect_id, spec.key_field: key, "status": "active"}

        return self._once(idem, apply)

    def confirm_later(self, correlation_id: str, token: str, data: dict[str, Any]) -> None:
        """Send the reply to the engine's reply endpoint shortly, from a thread of its own.

        The reply carries the command's correlation id and token back. A 4xx answer is final
        (bad token, late, duplicate, finished saga); a 5xx or no answer is retried.
        """
        reply = json.dumps(
            {"correlation_id": correlation_id, "token": token, "ok": True, "data": data}
        ).encode()
        self.store.outbox_add(correlation_id, reply)  # survives a crash; resent on restart
        self.send_later(correlation_id, reply)

    def send_later(self, correlation_id: str, reply: bytes, delay: float = 0.3) -> None:
        """Send a reply from the outbox from a thread of its own, retrying for a few minutes."""

        def send() -> None:
            time.sleep(delay)
            pause = 0.5
            for _ in range(40):  # any worker's endpoint will do; retry while none answers
                for url in self.reply_urls:
                    request = urllib.request.Request(
                        url, data=reply, headers={"Content-Type": "application/json"}
                    )
                    try:
                        with urllib.request.urlopen(request, timeout=5):
                            self.store.outbox_done(correlation_id)
                            return
                    except urllib.error.HTTPError as err:
                        if 400 <= err.code < 500:
                            self.store.outbox_done(correlation_id)
                            return  # refused for good: retrying cannot help
                    except OSError:
                        continue
                time.sleep(pause)
                pause = min(pause * 2, 5.0)

        threading.Thread(target=send, name=f"reply-{correlation_id}", daemon=True).start()

    def undo(self, body: dict[str, Any], idem: str, trace: str | None = None) -> tuple[int, Any]:
        """Undo the effect of ``body``'s business key, or leave a tombstone."""
        spec, store = self.spec, self.store
        key = str(body[spec.key_field])

        def apply() -> tuple[int, Any]:
            record = store.record(key)
            if record is None:
                store.put(key, "", "undone", None)
                store.log("tombstone", key, idem, trace)
            elif record["status"] == "active":
                store.put(key, record["id"], "undone", record["payload"])
                if spec.apply:
                    spec.apply(store, record["payload"], -1)
                store.log("undo", key, idem, trace)
            return 200, {spec.key_field: key, "status": "undone"}

        return self._once(idem, apply)


MAX_BODY = 256 * 1024
"""Largest request body a demo participant reads."""
DRAIN_LIMIT = 4 * 1024 * 1024
"""An oversized body up to this size is read and dropped before the 413 (then: closed)."""


class _BadRequest(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status, self.reason = status, reason


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 10  # seconds a client may stay silent (slow requests, idle keep-alive)
    participant: Participant

    def log_message(self, format: str, *args: Any) -> None:
        """Keep request logs out of the demo's output."""

    def _reply(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if self.close_connection:  # say so: a client must not send its next request on it
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> Any:
        """The JSON body, bounded: a bad or oversized request raises :class:`_BadRequest`."""
        raw = self.headers.get("Content-Length") or "0"
        if not raw.isdigit():
            raise _BadRequest(400, "Content-Length must be a non-negative integer")
        if int(raw) > MAX_BODY:
            if int(raw) <= DRAIN_LIMIT:  # read it away, so the client hears the 413 (no reset)
                left = int(raw)
                while left > 0 and (chunk := self.rfile.read(min(65536, left))):
                    left -= len(chunk)
            raise _BadRequest(413, f"body over {MAX_BODY} bytes")
        try:
            return json.loads(self.rfile.read(int(raw)) or b"null")
        except (ValueError, UnicodeDecodeError, RecursionError):
            raise _BadRequest(400, "body is not JSON (or is nested too deeply)") from None

    def do_GET(self) -> None:
        spec, store = self.participant.spec, self.participant.store
        if not self.path.startswith("/_admin/") and self.participant.down():
            self._reply(503, {"error": "down (injected outage)"})
        elif self.path == "/health":
            self._reply(200, {"service": spec.name, "ok": True})
        elif self.path == "/_admin/state":
            with self.participant.faults_lock:
                injected = dict(self.participant.injected)
            self._reply(200, {**store.dump(), "injected": injected})
        elif self.path.startswith(f"/{spec.resource}/"):
            with store.lock:
                record = store.record(self.path.rsplit("/", 1)[1])
            self._reply(200 if record else 404, record or {"error": "not found"})
        else:
            self._reply(404, {"error": f"no route GET {self.path}"})

    def do_DELETE(self) -> None:
        if self.path == "/_admin/faults":
            with self.participant.faults_lock:
                self.participant.faults.clear()
            self._reply(200, {"faults": 0})
        else:
            self._reply(404, {"error": f"no route DELETE {self.path}"})

    def do_POST(self) -> None:
        spec = self.participant.spec
        try:
            body = self._body()
        except _BadRequest as bad:
            self.close_connection = True  # the unread body must not be taken for a request
            self._reply(bad.status, {"error": bad.reason})
            return
        if not self.path.startswith("/_admin/") and self.participant.down():
            self._reply(503, {"error": "down (injected outage)"})
            return
        if self.path == "/_admin/outage":
            seconds = body.get("seconds") if isinstance(body, dict) else None
            if not isinstance(seconds, int | float) or not 0 <= seconds <= 3600:
                self._reply(400, {"error": 'body must be {"seconds": 0..3600}'})
                return
            self.participant.down_until = time.monotonic() + seconds
            self._reply(200, {"down_for": seconds})
            return
        if self.path == "/_admin/faults":
            try:
                injected = Fault(**body)
            except TypeError as err:
                self._reply(400, {"error": str(err)})
                return
            with self.participant.faults_lock:
                self.participant.faults.append(injected)
            self._reply(201, {"fault": body})
            return
        if self.path == f"/{spec.resource}":
            op = "do"
        elif self.path == f"/{spec.resource}/{spec.undo}":
            op = "undo"
        else:
            self._reply(404, {"error": f"no route POST {self.path}"})
            return
        idem = self.headers.get("Idempotency-Key")
        if not idem:
            self._reply(400, {"error": "missing Idempotency-Key header"})
            return
        if not isinstance(body, dict) or not isinstance(body.get(spec.key_field), str):
            self._reply(400, {"error": f"body must be an object with a string {spec.key_field!r}"})
            return
        self.participant.store.received(op, body[spec.key_field], idem)
        fault = self.participant.fault(op, body[spec.key_field])
        if fault is not None and fault.mode == "slow":
            time.sleep(fault.delay)
        elif fault is not None and fault.mode in ("error", "reject"):
            status = fault.status if fault.mode == "error" else (fault.status or 409)
            self._reply(status, {"error": f"injected {fault.mode}"})
            return
        trace = self.headers.get("traceparent")
        if op == "do":
            correlation = self.headers.get("Sagaloom-Correlation-Id") or idem
            token = self.headers.get("Sagaloom-Reply-Token")
            reply = (correlation, token) if token else None
            status, answer = self.participant.do(body, idem, trace, reply)
        else:
            status, answer = self.participant.undo(body, idem, trace)
        if fault is not None and fault.mode in ("garble", "empty"):
            # The effect applied, but the answer cannot be read: not JSON, or no body at all.
            data = b"<html>502 upstream confused</html>" if fault.mode == "garble" else b""
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        if fault is not None and fault.mode == "redirect":
            # The effect applied, then a 303 to where the result can be read (not followed).
            self.send_response(fault.status if 300 <= fault.status < 400 else 303)
            self.send_header("Location", f"/{self.participant.spec.resource}/result")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if fault is not None and fault.mode == "drop":
            self.close_connection = True
            self.connection.close()
            return
        self._reply(status, answer)


class RunningServices:
    """Demo participant servers running on loopback in background threads."""

    def __init__(
        self,
        host: str,
        servers: dict[str, ThreadingHTTPServer],
        stores: list[Store],
        warehouse: Warehouse | None = None,
    ) -> None:
        self._host = host
        self._servers = servers
        self._stores = stores
        self.warehouse = warehouse
        """The event-driven participant (over NATS), when started."""
        self._threads = [
            threading.Thread(target=s.serve_forever, name=f"svc-{n}", daemon=True)
            for n, s in servers.items()
        ]
        for thread in self._threads:
            thread.start()

    @property
    def urls(self) -> dict[str, str]:
        """Service name to base URL."""
        return {name: f"http://{self._host}:{s.server_port}" for name, s in self._servers.items()}

    def close(self) -> None:
        """Stop the servers and close their stores."""
        if self.warehouse is not None:
            self.warehouse.close()
        for server in self._servers.values():
            server.shutdown()
            server.server_close()
        for store in self._stores:
            store.close()


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
    servers: dict[str, ThreadingHTTPServer] = {}
    stores: list[Store] = []
    for spec in specs:
        store = Store(data_dir / f"{spec.name}.sqlite3")
        stores.append(store)
        participant = Participant(spec, store, reply_urls=reply_urls)
        if reply_urls:
            for correlation_id, reply in store.outbox_pending():  # replies a crash left unsent
                participant.send_later(correlation_id, reply, delay=0)
        handler = type(f"{spec.name}Handler", (_Handler,), {"participant": participant})
        server = ThreadingHTTPServer((host, (ports or {}).get(spec.name, 0)), handler)
        server.daemon_threads = True
        servers[spec.name] = server
    warehouse = None
    if nats_url:
        warehouse = Warehouse(nats_url, data_dir / "warehouse.sqlite3").start()
    return RunningServices(host, servers, stores, warehouse)
