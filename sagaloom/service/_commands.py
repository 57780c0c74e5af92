"""Saga commands over NATS JetStream: the same handlers, a durable consumer, ack after commit.

For each command message the consumer checks the headers (``Idempotency-Key``, correlation id,
reply token, reply subject), validates the body, and applies it through the inbox; the reply is
written to the outbox *in the same transaction* as the work, and the message is acknowledged only
once that transaction committed. A message delivered again (its ack was lost) or a command sent
again is answered from the inbox, without the handler: one effect, and a reply for each send
(its ``Nats-Msg-Id`` follows the command's, so a redelivery's reply is stored once).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import nats
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig
from nats.js.errors import NotFoundError
from sqlalchemy.ext.asyncio import AsyncSession

from sagaloom._wire._protocol import (
    BODY_REF_HEADER,
    DEFAULT_NAMESPACE,
    IDEMPOTENCY_HEADER,
    MSG_ID,
    REPLY_TO_HEADER,
    BrokerNames,
)
from sagaloom._wire._reply_auth import CORRELATION_HEADER, TOKEN_HEADER
from sagaloom.service._handlers import BadCommand, CommandInfo, Shape
from sagaloom.service._inbox import Answer, Inbox, forward_key, key_problem
from sagaloom.service._outbox import Outbox, Relay
from sagaloom.service._semantic_locks import Locks
from sagaloom.storage._bodies import read_body, send_body
from sagaloom.storage._errors import PayloadMissing


class CommandHost(Protocol):
    """What the command consumer needs of the service it serves (a ``SagaService``)."""

    inbox: Inbox
    outbox: Outbox
    relay: Relay
    locks: Locks
    max_depth: int


__all__ = ["BrokerCommands"]

log = logging.getLogger("sagaloom.service")

Handler = Callable[..., Awaitable[Any]]


@dataclass(frozen=True)
class _Route:
    handler: Handler
    shape: Shape
    undo: bool


class BrokerCommands:
    """A service's ``Command`` handlers and the consumer that feeds them."""

    def __init__(self, service: CommandHost, names: BrokerNames | None = None) -> None:
        """Handlers of ``service`` (its inbox, outbox and relay) for broker ``names``."""
        self.service = service
        self.names = names or BrokerNames(DEFAULT_NAMESPACE)
        self._routes: dict[str, _Route] = {}

    def on(self, subject: str, *, undo: bool = False) -> Callable[[Handler], Handler]:
        """Register a handler for commands on ``subject`` (``"warehouse.pack"``).

        The handler has the shape of an HTTP one (body, ``AsyncSession``, optionally
        :class:`CommandInfo`, and for an undo the forward call's :class:`Answer`).
        """

        def register(handler: Handler) -> Handler:
            self._routes[subject] = _Route(handler, Shape.of(handler), undo)
            return handler

        return register

    async def handle(self, message: Msg, *, ack: bool = True) -> Answer | None:
        """Apply one command message once; reply through the outbox; then acknowledge it.

        Args:
            message: The JetStream message.
            ack: Acknowledge it once committed (False: a manual consumer acks itself).

        Returns:
            The answer; None when the message was not a command this service takes (it is
            terminated, never redelivered).
        """
        headers = message.headers or {}
        subject = message.subject.removeprefix(self.names.command_prefix + ".")
        route = self._routes.get(subject)
        key = headers.get(IDEMPOTENCY_HEADER)
        problem = key_problem(key)
        if route is None or problem is not None:
            why = problem or f"no handler for {subject!r}"
            log.warning("command on %s dropped: %s", message.subject, why)
            with contextlib.suppress(Exception):
                await message.term()
            return None
        assert key is not None
        command = CommandInfo(
            key=key,
            correlation_id=headers.get(CORRELATION_HEADER) or key,
            reply_token=headers.get(TOKEN_HEADER),
            reply_to=headers.get(REPLY_TO_HEADER) or self.names.reply_subject,
        )
        reply_id = f"reply-{headers.get(MSG_ID) or key}"
        replied = False

        async def call(tx: AsyncSession, done: Answer | None = None) -> Answer:
            nonlocal replied
            answer = await route.shape.call(route.handler, body, tx, command, done)
            if route.undo:  # what the step held is free with its undo
                await self.service.locks.release_step(tx, forward_key(key) or key)
            if answer.status < 500:  # kept: its reply commits with it
                await self._reply(tx, command, answer, reply_id)
                replied = True
            return answer

        try:
            data = await _body(message)
            body = route.shape.parse(data, self.service.max_depth)
            undoes = forward_key(key)
            if route.undo and undoes is None:
                raise BadCommand(400, "an undo command's Idempotency-Key ends with ':compensate'")
        except BadCommand as bad:
            answer = Answer.json({"error": bad.reason}, bad.status)
        else:
            inbox = self.service.inbox
            if route.undo:
                assert undoes is not None
                answer = await inbox.compensate(key, call, undoes=undoes)
            else:
                answer = await inbox.forward(key, call)
        if answer.status >= 500 or answer.status == 429:  # nothing kept (a fault, a held
            # record): JetStream delivers it again shortly, and then it is applied
            with contextlib.suppress(Exception):
                await message.nak(delay=1)
            return answer
        if not replied:  # a repeat, a refusal or a bad body: reply in a transaction of its own
            async with self.service.outbox.sessions() as tx, tx.begin():
                await self._reply(tx, command, answer, reply_id)
        if ack:
            await message.ack()
        return answer

    async def _reply(
        self, tx: AsyncSession, command: CommandInfo, answer: Answer, msg_id: str
    ) -> None:
        data = answer.data()
        reason = data.get("error", "") if isinstance(data, dict) and not answer.ok else ""
        await self.service.outbox.add(
            tx,
            command.correlation_id,
            command.reply_token,
            ok=answer.ok,
            data=data if answer.ok else {},
            reason=str(reason) or f"HTTP {answer.status}",
            subject=command.reply_to,
            msg_id=msg_id,
        )

    async def consume(
        self, url: str, *, durable: str, stop: asyncio.Event | None = None, batch: int = 16
    ) -> None:
        """Take this service's commands from JetStream until ``stop`` is set.

        A durable pull consumer named ``durable`` on the commands stream, filtered on the
        registered subjects; the outbox's broker replies go out on the same connection.
        """
        stop = stop or asyncio.Event()

        async def disconnected() -> None:
            if not stop.is_set():  # (a stop closes the connection: no news)
                log.warning("nats: disconnected: reconnecting")

        nc = await nats.connect(url, name=f"sagaloom-service-{durable}", max_reconnect_attempts=-1,
                                error_cb=_one_line, disconnected_cb=disconnected)  # fmt: skip
        js = nc.jetstream()

        async def publish(subject: str, payload: bytes, headers: dict[str, str]) -> None:
            # a reply over the broker's message limit goes as a reference to its stored body
            payload, headers = await send_body(
                js, self.names.bodies_bucket, payload, headers, namespace=None, saga=None
            )
            await js.publish(subject, payload, headers=headers)

        self.service.relay.publish = publish
        try:
            while not stop.is_set():  # the engine's workers create the stream
                try:
                    await js.stream_info(self.names.commands_stream)
                    break
                except NotFoundError:
                    await asyncio.sleep(0.5)
            subjects = [f"{self.names.command_prefix}.{s}" for s in sorted(self._routes)]
            config = ConsumerConfig(
                durable_name=durable,
                ack_policy=AckPolicy.EXPLICIT,
                ack_wait=30,
                filter_subjects=subjects,
            )
            sub = await js.pull_subscribe(
                subjects[0], durable=durable, stream=self.names.commands_stream, config=config
            )
            while not stop.is_set():
                try:
                    messages = await sub.fetch(batch, timeout=0.5)
                except TimeoutError:
                    continue
                for message in messages:
                    try:
                        await self.handle(message)
                    except Exception as err:  # the database is down: JetStream redelivers
                        log.warning("command %s not applied: %s: %s", message.subject,
                                    type(err).__name__, err)  # fmt: skip
        finally:
            # Every command taken was answered and every reply's publish awaited its ack:
            # nothing is in flight, so close (a drain waits 30 s on the pull subscription).
            with contextlib.suppress(Exception):
                await nc.close()


async def _body(message: Msg) -> bytes:
    """The command's body: its own, or the stored body its reference names.

    Raises:
        BadCommand: the stored body is gone or altered (the saga is told, with the reason).
        nats.errors.Error: the broker did not answer (the command comes again).
    """
    if not (message.headers or {}).get(BODY_REF_HEADER):
        return message.data
    try:
        return await read_body(message._client.jetstream(), message.data, message.headers)
    except PayloadMissing as err:
        raise BadCommand(400, str(err)) from None


async def _one_line(err: Exception) -> None:
    """A broker connection error as one log line (not nats-py's traceback per reconnect)."""
    log.warning("nats: %s: %s", type(err).__name__, err)
