"""Operators' view of the broker: dead letters (list, re-deliver) and a saga's events."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import nats
from nats.aio.client import Client as NatsClient
from nats.js.api import ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from sagaloom._saga._model import SagaEvent
from sagaloom._wire._protocol import (
    DEAD_REASON,
    DEAD_SUBJECT,
    DEFAULT_NAMESPACE,
    MSG_ID,
    BrokerNames,
)

__all__ = ["DeadLetter", "dead_letters", "redeliver", "saga_events"]


@dataclass(frozen=True)
class DeadLetter:
    """A message that could not be processed."""

    seq: int
    """Its sequence in ``SAGALOOM_DEAD`` (what ``--redeliver`` takes)."""
    kind: str
    """``reply`` or ``trigger``."""
    subject: str
    """Where it was first published."""
    reason: str
    data: bytes
    headers: dict[str, str]
    time: str


@contextlib.asynccontextmanager
async def _connected(url: str) -> AsyncIterator[NatsClient]:
    nc = await nats.connect(url, name="saga-cli", connect_timeout=5, max_reconnect_attempts=0)
    try:
        yield nc
    finally:
        await nc.close()


async def dead_letters(
    url: str,
    limit: int = 100,
    *,
    kind: str | None = None,
    subject: str | None = None,
    oldest_first: bool = False,
    namespace: str = DEFAULT_NAMESPACE,
) -> list[DeadLetter]:
    """The dead letters still kept, newest first (after a flood, the ones an operator wants).

    Args:
        url: The NATS server.
        limit: At most this many.
        kind: Only ``reply`` or ``trigger`` letters.
        subject: Only letters first published to this subject (``prefix.>`` matches below it).
        oldest_first: Walk from the oldest instead.
        namespace: The broker namespace (``SAGALOOM_NATS_NAMESPACE``).
    """
    dead = BrokerNames(namespace).dead_stream
    async with _connected(url) as nc:
        js = nc.jetstream()
        try:
            info = await js.stream_info(dead)
        except NotFoundError:
            return []
        found: list[DeadLetter] = []
        if not info.state.messages:
            return found
        first, last = max(info.state.first_seq, 1), info.state.last_seq
        order = range(first, last + 1) if oldest_first else range(last, first - 1, -1)
        for seq in order:
            if len(found) >= limit:
                break
            try:
                raw = await js.get_msg(dead, seq)
            except NotFoundError:  # deleted (re-delivered)
                continue
            headers = dict(raw.headers or {})
            letter = DeadLetter(
                seq=seq,
                kind=(raw.subject or "").rsplit(".", 1)[-1],
                subject=headers.get(DEAD_SUBJECT, "?"),
                reason=headers.get(DEAD_REASON, "?"),
                data=raw.data or b"",
                headers=headers,
                time=str(raw.time) if raw.time else "",
            )
            if kind is not None and letter.kind != kind:
                continue
            if subject is not None and not _subject_matches(subject, letter.subject):
                continue
            found.append(letter)
        return found


def _subject_matches(pattern: str, subject: str) -> bool:
    """NATS-style: tokens split on ``.``, ``*`` matches one token, ``>`` the rest."""
    want, have = pattern.split("."), subject.split(".")
    for i, token in enumerate(want):
        if token == ">":
            return len(have) > i
        if i >= len(have) or (token != "*" and token != have[i]):
            return False
    return len(want) == len(have)


async def redeliver(url: str, seq: int, *, namespace: str = DEFAULT_NAMESPACE) -> str:
    """Publish dead letter ``seq`` again to its first subject, then drop it from the stream.

    Returns:
        The subject it went to.

    Raises:
        LookupError: no dead letter ``seq``.
    """
    dead = BrokerNames(namespace).dead_stream
    async with _connected(url) as nc:
        js = nc.jetstream()
        try:
            raw = await js.get_msg(dead, seq)
        except NotFoundError:
            raise LookupError(f"no dead letter {seq} in {dead}") from None
        headers = {
            k: v for k, v in (raw.headers or {}).items() if k not in (DEAD_REASON, DEAD_SUBJECT)
        }
        headers[MSG_ID] = f"redelivered-{seq}"
        subject: str | None = (raw.headers or {}).get(DEAD_SUBJECT)
        if not subject:
            raise LookupError(f"dead letter {seq} does not say where it came from")
        await js.publish(subject, raw.data or b"", headers=headers)
        await js.delete_msg(dead, seq)
        return subject


async def saga_events(
    url: str, workflow_id: str, *, wait: float = 1.0, namespace: str = DEFAULT_NAMESPACE
) -> list[SagaEvent]:
    """Every lifecycle event kept for the saga run(s) with ``workflow_id``, oldest first."""
    names = BrokerNames(namespace)
    suffix = names.event_subject("x", workflow_id).rsplit(".", 1)[-1]
    async with _connected(url) as nc:
        js = nc.jetstream()
        try:
            await js.stream_info(names.events_stream)
        except NotFoundError:
            return []
        sub = await js.pull_subscribe(
            f"{names.events_prefix}.*.{suffix}",
            stream=names.events_stream,
            config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL, inactive_threshold=30.0),
        )
        events: list[SagaEvent] = []
        while True:
            try:
                batch = await sub.fetch(100, timeout=wait)
            except TimeoutError:
                break
            for message in batch:
                await message.ack()
                event = SagaEvent.model_validate_json(message.data)
                if event.subject == workflow_id:
                    events.append(event)
        with contextlib.suppress(Exception):
            await sub.unsubscribe()
        return events
