"""The worker's broker consumers: replies to sagas, events that start sagas, dead letters.

Each consumer is durable and shared by every worker process (each message goes to one of
them), and acknowledges a message only once it is handled: delivered to its saga, or parked in
the dead-letter stream with the reason. A worker killed in between leaves the message
unacknowledged, and JetStream hands it to another worker after ``ACK_WAIT``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, StorageType, StreamConfig
from nats.js.errors import BadRequestError, NotFoundError
from temporalio.client import Client
from temporalio.common import MetricMeter, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.runtime import Runtime
from temporalio.service import RPCError

from sagaloom._broker._bus import Broker
from sagaloom._saga._definition import Saga, SagaInputError
from sagaloom._saga._model import Reply
from sagaloom._wire._protocol import (
    DEAD_REASON,
    DEAD_SUBJECT,
    MSG_ID,
)
from sagaloom.client._intake import Verdict, hand_over, read_reply
from sagaloom.client._runs import start_saga
from sagaloom.storage._bodies import read_body
from sagaloom.storage._errors import PayloadMissing

__all__ = ["ACK_WAIT", "MAX_DELIVERIES", "BrokerConsumers", "Trigger", "parse_triggers"]

log = logging.getLogger("sagaloom.broker")
ACK_WAIT = 30.0
"""Seconds a delivered, unacknowledged message waits before JetStream delivers it again."""
MAX_DELIVERIES = 5
"""Deliveries of one message (Temporal unreachable each time) before it is a dead letter."""
REPLY_CONSUMER = "sagaloom-replies"
"""The durable consumer of replies, shared by every worker."""
LIMIT_CHECK_EVERY = 5.0
"""Seconds between checks of the bounded streams."""
LIMIT_LOG_EVERY = 60.0
"""At most one warning a minute per stream that discards at its limit."""
RETRY_DELAY = 2.0
"""Seconds before a message that met a passing failure is delivered again."""


@dataclass(frozen=True)
class Trigger:
    """Messages on ``subject`` start ``saga``."""

    subject: str
    saga: Saga[Any]


def parse_triggers(specs: list[str], sagas: Mapping[str, Saga[Any]]) -> list[Trigger]:
    """``SUBJECT=SagaName`` pairs, checked against the registered sagas.

    Raises:
        ValueError: naming the malformed pair, or the unknown saga.
    """
    triggers = []
    for spec in specs:
        subject, sep, name = spec.partition("=")
        if not sep or not subject or not name:
            raise ValueError(f"trigger {spec!r} is not SUBJECT=SagaName")
        if name not in sagas:
            known = ", ".join(sorted(sagas)) or "none"
            raise ValueError(f"trigger {spec!r}: no saga {name!r} registered (sagas: {known})")
        triggers.append(Trigger(subject, sagas[name]))
    return triggers


class _Metrics:
    """Broker metrics through the Temporal runtime's meter (Prometheus when configured)."""

    def __init__(self, meter: MetricMeter) -> None:
        self.dead = meter.create_counter(
            "sagaloom_dead_letters", "Messages moved to the dead-letter stream"
        )
        self.pending = meter.create_gauge(
            "sagaloom_broker_pending", "Messages waiting in a sagaloom consumer"
        )
        self.discarded = meter.create_counter(
            "sagaloom_broker_discarded",
            "Messages a bounded stream (replies, dead letters) discarded at its limit",
        )
        self.reply_latency = meter.create_histogram_timedelta(
            "sagaloom_reply_latency", "From a reply's publish to its delivery to the saga", "ms"
        )


class BrokerConsumers:
    """Runs the reply consumer and the trigger consumers until stopped."""

    def __init__(
        self,
        broker: Broker,
        client: Client,
        deliver: Callable[[Reply], Awaitable[None]],
        *,
        triggers: Sequence[Trigger] = (),
        task_queue: str,
    ) -> None:
        """Consume for the sagas of a worker polling ``task_queue``."""
        self._broker = broker
        self._client = client
        self._deliver = deliver
        self._triggers = list(triggers)
        self._task_queue = task_queue
        runtime = client.service_client.config.runtime or Runtime.default()
        self._metrics = _Metrics(runtime.metric_meter)
        broker.use_meter(runtime.metric_meter)

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until ``stop`` is set; reconnects are the NATS client's business."""
        while True:
            try:
                js = await asyncio.wait_for(self._broker.jetstream(), 10)
                break
            except Exception as err:
                log.warning("NATS at %s not reachable: %s; retrying", self._broker.url, err)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 2)
                if stop.is_set():
                    return
        names = self._broker.names
        loops = [
            self._watch_limits(js, stop, (names.replies_stream, names.dead_stream)),
            self._consume(
                js,
                stop,
                names.reply_subject,
                names.replies_stream,
                names.reply_consumer,
                self._reply,
            ),
        ]
        if self._triggers:
            stream = names.triggers_stream
            await _ensure_trigger_stream(js, stream, [t.subject for t in self._triggers])
            for trigger in self._triggers:
                durable = names.trigger_consumer(trigger.saga.name, trigger.subject)
                handle = self._trigger_handler(trigger)
                loops.append(self._consume(js, stop, trigger.subject, stream, durable, handle))
        await asyncio.gather(*loops)

    def _trigger_handler(self, trigger: Trigger) -> Callable[[Msg], Awaitable[None]]:
        async def handle(message: Msg) -> None:
            await self._trigger(message, trigger)

        return handle

    async def _consume(
        self,
        js: JetStreamContext,
        stop: asyncio.Event,
        subject: str,
        stream: str,
        durable: str,
        handle: Callable[[Msg], Awaitable[None]],
    ) -> None:
        config = ConsumerConfig(
            durable_name=durable,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=ACK_WAIT,
            max_deliver=-1,  # counted here, so the last delivery becomes a dead letter
            deliver_policy=DeliverPolicy.ALL,
        )
        sub = await js.pull_subscribe(subject, durable=durable, stream=stream, config=config)
        last_gauge = 0.0
        while not stop.is_set():
            try:
                messages = await sub.fetch(32, timeout=1)
            except TimeoutError:
                messages = []
            except Exception as err:
                log.warning("consumer %s: %s; retrying", durable, err or type(err).__name__)
                await asyncio.sleep(1)
                continue
            for message in messages:
                await self._handle_safely(durable, handle, message)
            if time.monotonic() - last_gauge > 5:
                last_gauge = time.monotonic()
                with contextlib.suppress(Exception):
                    info = await sub.consumer_info()
                    self._metrics.pending.set(info.num_pending or 0, {"consumer": durable})
        with contextlib.suppress(Exception):
            await sub.unsubscribe()

    async def _watch_limits(
        self, js: JetStreamContext, stop: asyncio.Event, streams: Sequence[str]
    ) -> None:
        """Every few seconds: has a bounded stream discarded its oldest messages? Say so."""
        first: dict[str, int] = {}
        said: dict[str, float] = {}
        while not stop.is_set():
            for stream in streams:
                try:
                    info = await js.stream_info(stream)
                except Exception:  # away for now: the next round tells
                    continue
                state, config = info.state, info.config
                full = (config.max_msgs or 0) > 0 and state.messages >= (config.max_msgs or 0)
                full |= (config.max_bytes or 0) > 0 and state.bytes >= 0.98 * (
                    config.max_bytes or 0
                )
                gone = state.first_seq - first.get(stream, state.first_seq)
                first[stream] = state.first_seq
                if full and gone > 0:
                    self._metrics.discarded.add(gone, {"stream": stream})
                    if time.monotonic() - said.get(stream, -LIMIT_LOG_EVERY) >= LIMIT_LOG_EVERY:
                        said[stream] = time.monotonic()
                        log.warning(
                            "stream %s is at its limit (%d messages, %d bytes): its %d oldest "
                            "were discarded (a flood? see saga dead-letters)",
                            stream,
                            state.messages,
                            state.bytes,
                            gone,
                        )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), LIMIT_CHECK_EVERY)

    async def _handle_safely(
        self, durable: str, handle: Callable[[Msg], Awaitable[None]], message: Msg
    ) -> None:
        """Handle one message; whatever goes wrong ends in a re-delivery or a dead letter.

        No message may stall a consumer: an unexpected error (a bug, the broker away while
        acknowledging) is logged in one line and the message delivered again later, until its
        :data:`MAX_DELIVERIES`-th delivery makes it a dead letter.
        """
        try:
            await handle(message)
            return
        except Exception as err:
            why = f"{type(err).__name__}: {str(err)[:200]}"
        kind = "reply" if durable == self._broker.names.reply_consumer else "trigger"
        log.warning("consumer %s: could not handle a message on %s (%s)", durable,
                    message.subject, why)  # fmt: skip
        try:
            await self._later(message, kind, f"could not be handled: {why}")
        except Exception as err:  # the broker is away: JetStream re-delivers after ACK_WAIT
            log.warning("consumer %s: %s (it comes back after %ss)", durable, err, ACK_WAIT)

    # -- replies -------------------------------------------------------------------------------

    async def _reply(self, message: Msg) -> None:
        """Deliver one reply to its saga, or move it to the dead letters saying why."""
        data = await self._body(message, "reply")
        if data is None:
            return
        intake = read_reply(data, self._broker.signer, self._broker.reply_limit)
        if intake.verdict is Verdict.ACCEPTED and intake.reply is not None:
            intake = await hand_over(self._deliver, intake.reply, 10)
        match intake.verdict:
            case Verdict.ACCEPTED:
                sent = message.metadata.timestamp
                if sent is not None:
                    self._metrics.reply_latency.record(datetime.now(UTC) - sent)
                await message.ack()
            case Verdict.RETRY:
                await self._later(message, "reply", intake.why)
            case Verdict.REFUSED if (
                "duplicate reply" in intake.why and message.metadata.num_delivered > 1
            ):
                await message.ack()  # our own earlier delivery took it; the ack was lost
            case Verdict.REFUSED:
                await self._dead(message, "reply", f"rejected by the saga: {intake.why}")
            case Verdict.UNAUTHORIZED:
                await self._dead(message, "reply", "bad reply token")
            case Verdict.MALFORMED:
                await self._dead(message, "reply", f"malformed reply: {intake.why}")
            case _:
                await self._dead(message, "reply", intake.why)

    # -- triggers ------------------------------------------------------------------------------

    async def _trigger(self, message: Msg, trigger: Trigger) -> None:
        """Start the saga for one event; a redelivered event starts nothing new."""
        data = await self._body(message, "trigger")
        if data is None:
            return
        try:
            document = json.loads(data)
        except ValueError as err:
            await self._dead(message, "trigger", f"not JSON: {err}")
            return
        is_cloud_event = isinstance(document, dict) and "specversion" in document
        data = document.get("data") if is_cloud_event else document
        event_id = (message.headers or {}).get(MSG_ID) or (
            document.get("id") if is_cloud_event else None
        )
        if not event_id or not isinstance(event_id, str):
            # Without an id a re-sent event cannot be told from a new one: each would start
            # another saga (another charge). Refused, to be fixed at the producer.
            await self._dead(
                message,
                "trigger",
                f"no event id: publish with a {MSG_ID} header or as a CloudEvent with an id",
            )
            return
        workflow_id = f"{trigger.saga.name}-event-{event_id}"
        try:
            await start_saga(
                self._client,
                trigger.saga,
                data,
                id=workflow_id,
                task_queue=self._task_queue,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,  # one run per event
            )
            log.info("event %s on %s started saga %s", event_id, message.subject, workflow_id)
        except SagaInputError as err:
            await self._dead(message, "trigger", f"invalid input: {err}")
            return
        except WorkflowAlreadyStartedError:
            log.info("event %s already started saga %s", event_id, workflow_id)
        except (RPCError, TimeoutError, OSError, RuntimeError) as err:
            await self._later(message, "trigger", f"Temporal: {err}")
            return
        await message.ack()

    # -- failure paths -------------------------------------------------------------------------

    async def _body(self, message: Msg, kind: str) -> bytes | None:
        """The message's body, its stored one when it came as a reference (None: dead letter).

        A stored body that is gone or altered makes the message a dead letter saying so; the
        broker not answering raises, and the message comes again.
        """
        try:
            return await read_body(await self._broker.jetstream(), message.data, message.headers)
        except PayloadMissing as err:
            await self._dead(message, kind, str(err))
            return None

    async def _later(self, message: Msg, kind: str, why: str) -> None:
        """A passing failure: deliver it again soon, unless it has had its deliveries."""
        if message.metadata.num_delivered >= MAX_DELIVERIES:
            await self._dead(message, kind, f"{MAX_DELIVERIES} deliveries failed; last: {why}")
            return
        log.warning("%s on %s not handled (%s): retrying", kind, message.subject, why)
        await message.nak(delay=RETRY_DELAY)

    async def _dead(self, message: Msg, kind: str, reason: str) -> None:
        """Move ``message`` to the dead-letter stream with ``reason``, then acknowledge it."""
        js = await self._broker.jetstream()
        headers = dict(message.headers or {})
        headers.pop(MSG_ID, None)
        seq = message.metadata.sequence.stream
        headers.update(
            {
                DEAD_REASON: reason[:1000],
                DEAD_SUBJECT: message.subject,
                MSG_ID: f"dead-{message.metadata.stream}-{seq}",  # once, however often moved
            }
        )
        await js.publish(f"{self._broker.names.dead_prefix}.{kind}", message.data, headers=headers)
        self._metrics.dead.add(1, {"kind": kind})
        log.warning("dead letter (%s on %s): %s", kind, message.subject, reason)
        await message.ack()


async def _ensure_trigger_stream(js: JetStreamContext, stream: str, subjects: list[str]) -> None:
    """The stream that keeps trigger events, capturing every trigger subject."""
    try:
        info = await js.stream_info(stream)
    except NotFoundError:
        await js.add_stream(
            StreamConfig(
                name=stream,
                subjects=sorted(set(subjects)),
                storage=StorageType.FILE,
                max_age=7 * 24 * 3600,
                duplicate_window=600,
            )
        )
        return
    have = set(info.config.subjects or [])
    if not set(subjects) <= have:
        info.config.subjects = sorted(have | set(subjects))
        with contextlib.suppress(BadRequestError):
            await js.update_stream(info.config)
