"""One worker process's NATS connection: streams, the command and event activities.

The reply token is made here, in the activity, so the shared secret never enters history.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import nats
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import BadRequestError
from temporalio import activity
from temporalio.common import MetricCounter, MetricMeter
from temporalio.exceptions import ApplicationError

from sagaloom._saga._model import MAX_REPLY_BYTES, BrokerCommand, Reply, SagaEvent
from sagaloom._saga._outage import COMMAND_PROBE_ACTIVITY, COMMAND_SILENT_ACTIVITY
from sagaloom._wire._names import COMMAND_ACTIVITY, COMMAND_ASK_ACTIVITY, EVENTS_ACTIVITY
from sagaloom._wire._protocol import (
    IDEMPOTENCY_HEADER,
    MSG_ID,
    NAMESPACE_HEADER,
    REPLY_TO_HEADER,
    BrokerNames,
)
from sagaloom._wire._reply_auth import CORRELATION_HEADER, TOKEN_HEADER, ReplySigner
from sagaloom.participants._breakers import Breakers
from sagaloom.participants._classify import EXPECTED
from sagaloom.storage._bodies import send_body

__all__ = ["Broker", "StreamLimits", "ensure_streams"]

log = logging.getLogger("sagaloom.broker")
WEEK = timedelta(days=7).total_seconds()
DEDUPE_WINDOW = timedelta(minutes=10).total_seconds()
"""How long JetStream remembers a ``Nats-Msg-Id`` (covers an activity's retries)."""
RESEND_WITHIN = timedelta(seconds=DEDUPE_WINDOW) - timedelta(minutes=1)
"""How long after an ask's first attempt a later attempt publishes its command again: while the
stream still remembers its ``Nats-Msg-Id`` (later, the command is surely stored)."""
LIVE_WITHIN = timedelta(seconds=15)
"""A consumer that acknowledged a command this recently (or within a late step's wait, if
shorter) has a participant behind it: the step's silence is not an outage."""
PROBE_WITHIN = timedelta(seconds=2)
"""For the breaker's probe, only this recent counts: the breaker opened after a reply was late,
so activity from before (the participant's last work before it went down) must not close it."""


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
        breakers: Breakers | None = None,
    ) -> None:
        """Connect to ``url`` when first needed; make reply tokens with ``signer``.

        Args:
            url: The NATS server.
            signer: Makes and checks reply tokens.
            names: The broker namespace's names (``sagaloom`` by default).
            limits: Bounds of the replies and dead-letter streams.
            breakers: The per-service breakers commands ask before they are sent (off by
                default).
        """
        self.url = url
        self.signer = signer
        self.breakers = breakers or Breakers()
        self.names = names or BrokerNames()
        self.limits = limits or StreamLimits()
        """Subjects, streams and consumers of this worker's broker namespace."""
        self._nc: NatsClient | None = None
        self._js: JetStreamContext | None = None
        self._lock = asyncio.Lock()
        self._events: MetricCounter | None = None
        self.reply_limit = MAX_REPLY_BYTES
        """Largest reply data taken (``MAX_STORED_REPLY_BYTES`` with a payload store)."""

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
        """Publish a step's command; the stream stores it once however often this is retried.

        Raises:
            ApplicationError: ``ServiceBreakerOpen`` (nothing sent) when the command asks the
                breaker of its service and that is open; the saga waits for it.
        """
        await self._publish(command)

    @activity.defn(name=COMMAND_ASK_ACTIVITY)
    async def ask(self, command: BrokerCommand) -> Reply:
        """Publish a step's command, then leave the activity open: its reply completes it.

        The worker that takes the reply (any of them) completes this activity by its id
        (:func:`~sagaloom._wire._names.reply_activity_id`), so the reply is the activity's result:
        no update, no further workflow task. A reply that finds no open ask goes through the
        ``participant_reply`` update as before. An attempt ends after a while without a reply
        and the next one waits on; its publish (in the stream's de-duplication window) is what
        heals an attempt whose worker died before it published.

        Raises:
            ApplicationError: ``ServiceBreakerOpen``, as :meth:`send`.
        """
        info = activity.info()
        if info.attempt == 1:
            await self._publish(command)
        elif datetime.now(UTC) - info.scheduled_time < RESEND_WITHIN:
            # A later attempt: the first may have died before its publish. Sent again under
            # the same Nats-Msg-Id, the stream stores it once; the breaker was asked already.
            await self._publish(command.model_copy(update={"breaker": False, "released": False}))
        activity.raise_complete_async()

    async def _publish(self, command: BrokerCommand) -> None:
        guarded = command.breaker and self.breakers.enabled
        if command.released:
            self.breakers.forget(command.service)
        elif guarded:  # the saga waits while its service is down or an operator holds the step
            await self.breakers.check(command.service, f"command {command.subject}")
        js = await self._publisher()
        namespace, saga = _saga()
        headers = {
            MSG_ID: command.msg_id,
            IDEMPOTENCY_HEADER: command.correlation_id,
            CORRELATION_HEADER: command.correlation_id,
            TOKEN_HEADER: self.signer.token(command.correlation_id),
            REPLY_TO_HEADER: self.names.reply_subject,
            NAMESPACE_HEADER: namespace or "",
            "Content-Type": "application/json",
        }
        payload, headers = await send_body(  # over the message limit: stored, sent as a reference
            js,
            self.names.bodies_bucket,
            json.dumps(command.body).encode(),
            headers,
            namespace=namespace,
            saga=saga,
        )
        subject = self.names.command_subject(command.subject)
        ack = await js.publish(subject, payload, headers=headers)
        if ack.duplicate:
            log.info("command %s was already stored (a retried publish)", command.msg_id)

    @activity.defn(name=EVENTS_ACTIVITY)
    async def publish_events(self, events: list[SagaEvent]) -> None:
        """Publish lifecycle events, each stored once (``Nats-Msg-Id`` = the event id)."""
        js = await self._publisher()
        namespace, _saga_id = _saga()
        for event in events:
            saga = event.source.rsplit("/", 1)[-1]
            body, headers = await send_body(
                js,
                self.names.bodies_bucket,
                event.model_dump_json().encode(),
                {MSG_ID: event.id, "Content-Type": "application/cloudevents+json"},
                namespace=namespace,
                saga=_saga_id,
            )
            await js.publish(self.names.event_subject(saga, event.subject), body, headers=headers)

    @activity.defn(name=COMMAND_PROBE_ACTIVITY)
    async def probe_consumers(self, service: str) -> str:
        """The breaker's probe of a ``Command`` service: "" once a participant takes them."""
        return await self._liveness(service, PROBE_WITHIN)

    @activity.defn(name=COMMAND_SILENT_ACTIVITY)
    async def command_silent(self, service: str, reason: str, waited_seconds: float) -> bool:
        """A command's reply is late: whether its participant is down (its breaker is told).

        Args:
            service: The command's service.
            reason: Why the step asks (the reply timeout).
            waited_seconds: How long the step waited: a consumer that acknowledged a command
                within that time (or 15 s, if less) is up, just silent to this one.

        Returns:
            True when no participant takes the service's commands: its breaker opens and the
            step waits for it; False when one does.
        """
        recent = min(LIVE_WITHIN, timedelta(seconds=waited_seconds))
        problem = await self._liveness(service, recent)
        if not problem or not self.breakers.enabled:
            return False
        await self.breakers.report(
            service, f"{reason}; {problem}", decisive=True, probe=COMMAND_PROBE_ACTIVITY
        )
        return True

    async def _liveness(self, service: str, recent: timedelta) -> str:
        """Whether a participant takes ``service``'s commands: "" when one does, else why.

        A consumer of the commands stream whose filter takes ``<prefix>.<service>.…`` has a
        participant behind it when it has a pull request waiting (someone asks for commands
        right now) or had a command delivered or acknowledged within ``recent``.
        """
        js = await self._publisher()
        base = f"{self.names.command_prefix}.{service}"
        now, takers = datetime.now(UTC), 0
        for info in await js.consumers_info(self.names.commands_stream):
            config = info.config
            filters = [config.filter_subject] if config.filter_subject else []
            filters += config.filter_subjects or []
            if filters and not any(_takes(f, base) for f in filters):
                continue
            takers += 1
            seen = [s.last_active for s in (info.ack_floor, info.delivered) if s and s.last_active]
            if (info.num_waiting or 0) > 0 or (seen and now - max(seen) < recent):
                return ""
        if not takers:
            return f"no consumer takes {base}.>"
        return f"no participant pulls {base}.> ({takers} idle consumer(s))"

    async def _publisher(self) -> JetStreamContext:
        try:
            return await asyncio.wait_for(self.jetstream(), 10)
        except (TimeoutError, OSError, nats.errors.Error) as err:
            # retryable: the step's retry policy (or the event flush's) tries again
            raise ApplicationError(
                f"NATS at {self.url} unreachable: {err or type(err).__name__}",
                type="BrokerUnavailable",
                category=EXPECTED,  # an outage: the connection's own log line says so
            ) from None


def _saga() -> tuple[str | None, str | None]:
    """The running activity's namespace and workflow id (None, None outside an activity)."""
    if not activity.in_activity():
        return None, None
    info = activity.info()
    return info.workflow_namespace or info.namespace, info.workflow_id


def _takes(pattern: str, base: str) -> bool:
    """Whether a consumer filtering ``pattern`` takes subjects under ``base`` (NATS wildcards)."""
    want, have = pattern.split("."), base.split(".")
    for i, token in enumerate(want):
        if token == ">" or i >= len(have):
            return True
        if token not in ("*", have[i]):
            return False
    return len(want) >= len(have)
