"""One worker process's NATS connection: streams, the command and event activities.

The reply token is made here, in the activity, so the shared secret never enters history.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from dataclasses import dataclass
from datetime import timedelta

import nats
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import BadRequestError
from temporalio import activity
from temporalio.common import MetricCounter, MetricMeter
from temporalio.exceptions import ApplicationError

from sagaloom._model import BrokerCommand, SagaEvent
from sagaloom._names import COMMAND_ACTIVITY, EVENTS_ACTIVITY
from sagaloom._protocol import (
    IDEMPOTENCY_HEADER,
    MSG_ID,
    REPLY_TO_HEADER,
    BrokerNames,
)
from sagaloom._reply_auth import CORRELATION_HEADER, TOKEN_HEADER, ReplySigner

__all__ = ["Broker", "StreamLimits", "ensure_streams"]

log = logging.getLogger("sagaloom.broker")
WEEK = timedelta(days=7).total_seconds()
DEDUPE_WINDOW = timedelta(minutes=10).total_seconds()
"""How long JetStream remembers a ``Nats-Msg-Id`` (covers an activity's retries)."""


@dataclass(frozen=True)
class StreamLimits:
    """Bounds of the streams anyone with publish permission can fill: replies, dead letters.

    At a bound JetStream discards the oldest message; the consumers log it and count it in
    ``sagaloom_broker_discarded`` (``SAGALOOM_NATS_MAX_MSGS``, ``SAGALOOM_NATS_MAX_BYTES``).
    The replies stream (created by this version) keeps only replies not yet taken, so its bound
    is on the backlog: a flood must outrun the consumers to push a real reply out.
    """

    max_msgs: int = 100_000
    max_bytes: int = 256 * 1024 * 1024


async def ensure_streams(
    js: JetStreamContext, names: BrokerNames | None = None, limits: StreamLimits | None = None
) -> None:
    """Create sagaloom's streams where missing (file storage, a week, 10-minute de-duplication).

    The replies and dead-letter streams are bounded by ``limits``; one created unbounded by an
    earlier version gets the bounds (any other setting an operator chose is kept).
    """
    names, limits = names or BrokerNames(), limits or StreamLimits()
    bounded = {names.replies_stream, names.dead_stream}
    for name, subject in names.streams():
        bound = name in bounded
        config = StreamConfig(
            name=name,
            subjects=[subject],
            storage=StorageType.FILE,
            max_age=WEEK,
            duplicate_window=DEDUPE_WINDOW,
            max_msgs=limits.max_msgs if bound else None,
            max_bytes=limits.max_bytes if bound else None,
            discard=DiscardPolicy.OLD,
            # replies are removed once taken: the bound is on the backlog, not on history
            retention=RetentionPolicy.WORK_QUEUE
            if name == names.replies_stream
            else RetentionPolicy.LIMITS,
        )
        try:
            await js.add_stream(config)
        except BadRequestError:  # exists with other settings: keep the operator's
            info = await js.stream_info(name)
            have = info.config
            if bound and (have.max_msgs or -1) < 0 and (have.max_bytes or -1) < 0:
                have.max_msgs, have.max_bytes = limits.max_msgs, limits.max_bytes
                with contextlib.suppress(BadRequestError):
                    await js.update_stream(have)


class Broker:
    """The worker's NATS connection (made on first use) and its broker activities."""

    def __init__(
        self,
        url: str,
        signer: ReplySigner,
        names: BrokerNames | None = None,
        limits: StreamLimits | None = None,
    ) -> None:
        """Connect to ``url`` when first needed; make reply tokens with ``signer``.

        Args:
            url: The NATS server.
            signer: Makes and checks reply tokens.
            names: The broker namespace's names (``sagaloom`` by default).
            limits: Bounds of the replies and dead-letter streams.
        """
        self.url = url
        self.signer = signer
        self.names = names or BrokerNames()
        self.limits = limits or StreamLimits()
        """Subjects, streams and consumers of this worker's broker namespace."""
        self._nc: NatsClient | None = None
        self._js: JetStreamContext | None = None
        self._lock = asyncio.Lock()
        self._events: MetricCounter | None = None

    def use_meter(self, meter: MetricMeter) -> None:
        """Count connection events in ``sagaloom_broker_connection_events`` (by ``event``)."""
        self._events = meter.create_counter(
            "sagaloom_broker_connection_events",
            "NATS connection events of this worker: disconnected, reconnected, error",
        )

    def _note(self, event: str, detail: str = "") -> None:
        """One log line per connection event (not nats-py's traceback), and a count."""
        level = logging.INFO if event == "reconnected" else logging.WARNING
        log.log(level, "nats %s %s%s", self.url, event, f": {detail}" if detail else "")
        if self._events is not None:
            self._events.add(1, {"event": event})

    async def _on_error(self, err: Exception) -> None:
        self._note("error", f"{type(err).__name__}: {err}".rstrip(": "))

    async def _on_disconnected(self) -> None:
        self._note("disconnected", "reconnecting")

    async def _on_reconnected(self) -> None:
        self._note("reconnected")

    async def jetstream(self) -> JetStreamContext:
        """The JetStream context, connecting (and creating the streams) on first use."""
        async with self._lock:
            if self._js is None:
                self._nc = await nats.connect(
                    self.url,
                    name="sagaloom-worker",
                    max_reconnect_attempts=-1,
                    reconnect_time_wait=0.5,
                    connect_timeout=5,
                    error_cb=self._on_error,
                    disconnected_cb=self._on_disconnected,
                    reconnected_cb=self._on_reconnected,
                )
                self._js = self._nc.jetstream(timeout=5)
                await ensure_streams(self._js, self.names, self.limits)
            return self._js

    async def aclose(self) -> None:
        """Drain and close the connection."""
        nc, self._nc, self._js = self._nc, None, None
        if nc is not None and not nc.is_closed:
            await nc.drain()

    @activity.defn(name=COMMAND_ACTIVITY)
    async def send(self, command: BrokerCommand) -> None:
        """Publish a step's command; the stream stores it once however often this is retried."""
        js = await self._publisher()
        headers = {
            MSG_ID: command.msg_id,
            IDEMPOTENCY_HEADER: command.correlation_id,
            CORRELATION_HEADER: command.correlation_id,
            TOKEN_HEADER: self.signer.token(command.correlation_id),
            REPLY_TO_HEADER: self.names.reply_subject,
            "Content-Type": "application/json",
        }
        payload = json.dumps(command.body).encode()
        subject = self.names.command_subject(command.subject)
        ack = await js.publish(subject, payload, headers=headers)
        if ack.duplicate:
            log.info("command %s was already stored (a retried publish)", command.msg_id)

    @activity.defn(name=EVENTS_ACTIVITY)
    async def publish_events(self, events: list[SagaEvent]) -> None:
        """Publish lifecycle events, each stored once (``Nats-Msg-Id`` = the event id)."""
        js = await self._publisher()
        for event in events:
            saga = event.source.rsplit("/", 1)[-1]
            await js.publish(
                self.names.event_subject(saga, event.subject),
                event.model_dump_json().encode(),
                headers={MSG_ID: event.id, "Content-Type": "application/cloudevents+json"},
            )

    async def _publisher(self) -> JetStreamContext:
        try:
            return await asyncio.wait_for(self.jetstream(), 10)
        except (TimeoutError, OSError, nats.errors.Error) as err:
            # retryable: the step's retry policy (or the event flush's) tries again
            raise ApplicationError(
                f"NATS at {self.url} unreachable: {err or type(err).__name__}",
                type="BrokerUnavailable",
            ) from None
