"""Saga commands over HTTP: a FastAPI/Starlette endpoint around an ordinary typed handler.

``@service.action`` and ``@service.compensation`` turn ``async def charge(body: Charge, tx:
AsyncSession) -> Out`` into an endpoint that takes a ``Request`` (so it serves FastAPI, Starlette
and anything built on them): it checks the ``Idempotency-Key``, bounds and validates the body
(a 4xx with a one-line reason naming the field), then runs the handler through the inbox in one
transaction with the key and the answer.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Sequence
from contextlib import asynccontextmanager
from typing import Any, overload

from pydantic import BaseModel
from sqlalchemy import MetaData
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from starlette.requests import Request
from starlette.responses import Response

from sagaloom._wire._protocol import DEFAULT_NAMESPACE, IDEMPOTENCY_HEADER, BrokerNames
from sagaloom._wire._reply_auth import CORRELATION_HEADER, TOKEN_HEADER
from sagaloom.service._commands import BrokerCommands
from sagaloom.service._handlers import BadCommand, CommandInfo, Shape
from sagaloom.service._inbox import Answer, Inbox, forward_key, key_problem
from sagaloom.service._outbox import NatsPublish, Outbox, Relay
from sagaloom.service._semantic_locks import Locks

__all__ = ["MAX_BODY_BYTES", "MAX_DEPTH", "CommandInfo", "SagaService"]

log = logging.getLogger("sagaloom.service")

MAX_BODY_BYTES = 1024 * 1024
"""Largest command body a service takes by default (413 past it)."""
MAX_DEPTH = 32
"""Deepest JSON nesting a service takes by default."""

Endpoint = Callable[[Request], Awaitable[Response]]
Handler = Callable[..., Awaitable[Any]]


class SagaService:
    """The participant side of a service: its inbox and its HTTP endpoints."""

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        metadata: MetaData | None = None,
        inbox: Inbox | None = None,
        outbox: Outbox | None = None,
        reply_urls: Sequence[str] = (),
        publish: NatsPublish | None = None,
        namespace: str = DEFAULT_NAMESPACE,
        max_body_bytes: int = MAX_BODY_BYTES,
        max_depth: int = MAX_DEPTH,
    ) -> None:
        """Keep each command's key and answer in ``engine``'s database.

        Args:
            engine: The service's own database (where its handlers write).
            metadata: The service's own tables, created by :meth:`start` where missing.
            inbox: An inbox with another table name; by default ``sagaloom_inbox``.
            outbox: An outbox with another table name; by default ``sagaloom_outbox``.
            reply_urls: The workers' reply endpoints (``http://host:port/replies``), for
                replies sent later (:meth:`reply`).
            publish: Publishes broker replies (for commands that came over NATS); set by
                :meth:`consume`.
            namespace: The engine's broker namespace (``SAGALOOM_NATS_NAMESPACE``).
            max_body_bytes: Larger bodies are refused (413).
            max_depth: Deeper JSON is refused (400).
        """
        self.engine = engine
        self.inbox = inbox or Inbox(engine)
        self.outbox = outbox or Outbox(engine)
        self.locks = Locks(engine)
        """Semantic locks: records pending for a saga (:meth:`lock`)."""
        self.relay = Relay(self.outbox, reply_urls=reply_urls, publish=publish)
        """Delivers the outbox's replies (started by :meth:`start`)."""
        self.metadata = metadata
        self.commands = BrokerCommands(self, BrokerNames(namespace))
        """The service's ``Command`` handlers (``@service.command(...)``) and their consumer."""
        self.max_body_bytes = max_body_bytes
        self.max_depth = max_depth

    async def start(self) -> None:
        """Create the toolkit's tables, and the service's, where missing; start the relay.

        Replies a crash left in the outbox are delivered now.
        """
        await self.inbox.create_tables()
        await self.outbox.create_tables()
        await self.locks.create_tables()
        if self.metadata is not None:
            async with self.engine.begin() as connection:
                await connection.run_sync(self.metadata.create_all)
        self.relay.start()

    async def stop(self) -> None:
        """Stop the relay (undelivered replies wait in the outbox for the next start)."""
        await self.relay.aclose()

    async def lock(
        self, tx: AsyncSession, command: CommandInfo, *resources: str, wait: bool = True
    ) -> None:
        """Mark ``resources`` (``"account:42"``) pending for ``command``'s saga, in ``tx``.

        Another saga's command that locks one of them waits — answered 429 with
        ``Retry-After``, which the engine retries under its step's policy (give such steps
        room) — or, with ``wait=False``, is refused (409). The lock is released in the
        transaction of the step's compensation, and when the saga ends (``Saga(
        notify_participants=True)`` and :meth:`saga_ended` mounted at
        ``/sagaloom/saga-ended``).
        """
        await self.locks.take(tx, command, *resources, wait=wait)

    async def saga_ended(self, request: Request) -> Response:
        """The endpoint the engine tells that a saga ended (``POST /sagaloom/saga-ended``).

        Frees every lock the saga held. Mount it: ``app.post("/sagaloom/saga-ended")(
        service.saga_ended)``; protect it like the other endpoints (a service token).
        """
        raw = await request.body()
        try:
            notice = json.loads(raw[:4096] if len(raw) <= 4096 else b"")
            saga_id = notice["saga_id"]
            if not isinstance(saga_id, str) or key_problem(saga_id) is not None:
                raise ValueError(saga_id)
        except (ValueError, KeyError, TypeError):
            return _json({"error": 'body must be {"saga_id": "<workflow id>", ...}'}, 400)
        async with self.inbox.sessions() as tx, tx.begin():
            released = await self.locks.release_saga(tx, saga_id)
        log.info("saga %s ended (%s): %d lock(s) released", saga_id,
                 str(notice.get("status", "?"))[:20], released)  # fmt: skip
        return _json({"released": released}, 200)

    async def reply(
        self,
        tx: AsyncSession,
        command: CommandInfo,
        data: Any = None,
        *,
        ok: bool = True,
        reason: str = "",
    ) -> None:
        """Reply to ``command`` later, in ``tx``: the reply is sent once ``tx`` commits.

        For a step with ``reply_timeout`` (the engine waits for a reply after the call's 202)
        or a ``Command``: the action answers at once, the work finishes later in a
        transaction of its own, which calls this. ``command`` is what the action was given
        (keep it with the work).
        """
        if isinstance(data, BaseModel):
            data = data.model_dump(mode="json")
        await self.outbox.add(tx, command.correlation_id, command.reply_token, ok=ok,
                              data=data, reason=reason, subject=command.reply_to)  # fmt: skip

    @asynccontextmanager
    async def lifespan(self, app: Any) -> AsyncIterator[None]:
        """A Starlette/FastAPI lifespan that calls :meth:`start`: ``FastAPI(lifespan=...)``."""
        await self.start()
        try:
            yield
        finally:
            await self.stop()

    @overload
    def action(self, handler: Handler) -> Endpoint: ...
    @overload
    def action(
        self, handler: None = None, *, steps: Collection[str] | None = None
    ) -> Callable[[Handler], Endpoint]: ...
    def action(
        self, handler: Handler | None = None, *, steps: Collection[str] | None = None
    ) -> Endpoint | Callable[[Handler], Endpoint]:
        """An endpoint applying ``handler`` once per ``Idempotency-Key``.

        The handler takes the body (any type pydantic validates: a model, a dict), an
        ``AsyncSession`` (its transaction: write, never commit) and optionally a
        :class:`CommandInfo`. It returns the answer's data (a model, a dict...) or an
        :class:`~sagaloom.service.Answer`; it raises :class:`~sagaloom.service.Refused` to say
        no. A repeated key gets the first answer without the handler.

        Args:
            handler: The handler (``@service.action``).
            steps: The saga steps allowed to call it (``@service.action(steps={"charge"})``):
                a key that names another step is refused (400). None: any.
        """
        if handler is None:
            return lambda h: self._endpoint(h, undo=False, steps=steps)
        return self._endpoint(handler, undo=False, steps=steps)

    @overload
    def compensation(self, handler: Handler) -> Endpoint: ...
    @overload
    def compensation(
        self, handler: None = None, *, steps: Collection[str] | None = None
    ) -> Callable[[Handler], Endpoint]: ...
    def compensation(
        self, handler: Handler | None = None, *, steps: Collection[str] | None = None
    ) -> Endpoint | Callable[[Handler], Endpoint]:
        """An endpoint undoing, once, what the action with the same key prefix did.

        As :meth:`action`; the handler may also take an :class:`~sagaloom.service.Answer`: the
        forward call's stored answer. It is not called when there is nothing to undo (the
        forward call never arrived: a tombstone then refuses it; or it was refused).
        """
        if handler is None:
            return lambda h: self._endpoint(h, undo=True, steps=steps)
        return self._endpoint(handler, undo=True, steps=steps)

    def command(
        self, subject: str, *, undo: bool = False
    ) -> Callable[[Callable[..., Awaitable[Any]]], Callable[..., Awaitable[Any]]]:
        """Handle ``Command`` steps' messages on ``subject`` (``"warehouse.pack"``) once each.

        The handler has the shape of :meth:`action` (``undo=True``: of :meth:`compensation`);
        its answer becomes the reply, written to the outbox with the work, and the message is
        acknowledged once that committed. Run :meth:`consume` to take the messages.
        """
        return self.commands.on(subject, undo=undo)

    async def consume(self, url: str, *, durable: str, stop: asyncio.Event | None = None) -> None:
        """Take this service's commands from NATS JetStream at ``url`` until ``stop`` is set.

        Starts the service (:meth:`start`) first; a durable consumer named ``durable``, shared
        by every process of the service.
        """
        await self.start()
        try:
            await self.commands.consume(url, durable=durable, stop=stop)
        finally:
            await self.stop()

    def _endpoint(self, handler: Handler, *, undo: bool, steps: Collection[str] | None) -> Endpoint:
        shape = Shape.of(handler)
        allowed = frozenset(steps) if steps is not None else None

        @functools.wraps(handler)
        async def endpoint(request: Request) -> Response:
            try:
                command, body = await self._read(request, shape, undo=undo)
                if allowed is not None and command.step not in allowed:
                    takes = ", ".join(sorted(allowed))
                    why = f"the Idempotency-Key names step {command.step!r}; this takes {takes}"
                    raise BadCommand(400, why)
            except BadCommand as bad:
                log.info("%s %s refused: %s", request.method, request.url.path, bad.reason)
                return _json({"error": bad.reason}, bad.status)

            async def call(tx: AsyncSession, done: Answer | None = None) -> Answer:
                answer = await shape.call(handler, body, tx, command, done)
                if undo:  # what the step held is free with its undo
                    await self.locks.release_step(tx, forward_key(command.key) or command.key)
                return answer

            if undo:
                forward = forward_key(command.key)
                assert forward is not None
                answer = await self.inbox.compensate(command.key, call, undoes=forward)
            else:
                answer = await self.inbox.forward(command.key, call)
            return Response(answer.body, answer.status, headers=dict(answer.headers))

        endpoint.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
            [inspect.Parameter("request", inspect.Parameter.POSITIONAL_OR_KEYWORD,
                               annotation=Request)],
            return_annotation=Response,
        )  # fmt: skip
        endpoint.__annotations__ = {"request": Request, "return": Response}
        return endpoint

    async def _read(self, request: Request, shape: Shape, *, undo: bool) -> tuple[CommandInfo, Any]:
        """The command's key and validated body.

        Raises:
            BadCommand: a 4xx and a one-line reason.
        """
        key = request.headers.get(IDEMPOTENCY_HEADER)
        if (problem := key_problem(key)) is not None:
            raise BadCommand(400, problem)
        assert key is not None
        if undo and forward_key(key) is None:
            raise BadCommand(400, "a compensation's Idempotency-Key ends with ':compensate'")
        if not undo and forward_key(key) is not None:
            raise BadCommand(400, "this is an action: its Idempotency-Key cannot be an undo's")
        command = CommandInfo(
            key=key,
            correlation_id=request.headers.get(CORRELATION_HEADER) or key,
            reply_token=request.headers.get(TOKEN_HEADER),
        )
        declared = request.headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_body_bytes):
            raise BadCommand(413, f"body over {self.max_body_bytes} bytes")
        raw = bytearray()
        async for chunk in request.stream():
            raw += chunk
            if len(raw) > self.max_body_bytes:
                raise BadCommand(413, f"body over {self.max_body_bytes} bytes")
        return command, shape.parse(bytes(raw), self.max_depth)


def _json(data: Any, status: int) -> Response:
    return Response(json.dumps(data), status, media_type="application/json")
