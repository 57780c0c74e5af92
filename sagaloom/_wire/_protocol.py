"""The broker protocol: streams, subjects and headers a participant codes against.

Sandbox-safe (no I/O, no NATS import): the workflow side builds subjects and ids from here.

* Commands go to ``sagaloom.cmd.<subject>`` (stream ``SAGALOOM_COMMANDS``), JSON body, headers
  ``Nats-Msg-Id`` (one per send: a retried publish is stored once), ``Idempotency-Key``
  (the step's key, the same on every send), ``Sagaloom-Correlation-Id``,
  ``Sagaloom-Reply-Token`` and ``Sagaloom-Reply-To``.
* Replies go to ``sagaloom.replies`` (stream ``SAGALOOM_REPLIES``): JSON ``{correlation_id,
  token, ok, data, reason}``, the same shape as an HTTP reply; ``Nats-Msg-Id`` derived from the
  command's ``Nats-Msg-Id`` (for example ``reply-<command's id>``), so a participant's retried
  reply is stored once and its reply to a later send of the same command (an undo sent again,
  an operator's retry) is new. (Not the correlation id: the same on every send, JetStream would
  drop the later replies as duplicates for its de-duplication window.)
* Lifecycle events: ``sagaloom.events.<saga>.<workflow id>`` (stream ``SAGALOOM_EVENTS``),
  CloudEvents 1.0 JSON, ``Nats-Msg-Id`` = the event id.
* Dead letters: ``sagaloom.dead.<kind>`` (stream ``SAGALOOM_DEAD``): the original body, its
  headers, and ``Sagaloom-Dead-Reason`` / ``Sagaloom-Dead-Subject``.
* Triggers: the user's own subjects, captured by stream ``SAGALOOM_TRIGGERS``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = [
    "BODY_BYTES_HEADER",
    "BODY_DIGEST_HEADER",
    "BODY_REF_HEADER",
    "COMMANDS_STREAM",
    "COMMAND_PREFIX",
    "DEAD_PREFIX",
    "DEAD_REASON",
    "DEAD_STREAM",
    "DEAD_SUBJECT",
    "DEFAULT_NAMESPACE",
    "EVENTS_PREFIX",
    "EVENTS_STREAM",
    "IDEMPOTENCY_HEADER",
    "MSG_ID",
    "NAMESPACE_HEADER",
    "REPLIES_STREAM",
    "REPLY_SUBJECT",
    "REPLY_TO_HEADER",
    "TRIGGERS_STREAM",
    "BrokerNames",
    "command_subject",
    "event_subject",
    "namespace_problem",
    "subject_problem",
]

COMMANDS_STREAM = "SAGALOOM_COMMANDS"
COMMAND_PREFIX = "sagaloom.cmd"
REPLIES_STREAM = "SAGALOOM_REPLIES"
REPLY_SUBJECT = "sagaloom.replies"
EVENTS_STREAM = "SAGALOOM_EVENTS"
EVENTS_PREFIX = "sagaloom.events"
DEAD_STREAM = "SAGALOOM_DEAD"
DEAD_PREFIX = "sagaloom.dead"
TRIGGERS_STREAM = "SAGALOOM_TRIGGERS"

MSG_ID = "Nats-Msg-Id"
"""JetStream's de-duplication header: a message with an id seen in the window is stored once."""
IDEMPOTENCY_HEADER = "Idempotency-Key"
"""Command header: the step's idempotency key, the same on every send of that step's command
(the same header HTTP participants get)."""
REPLY_TO_HEADER = "Sagaloom-Reply-To"
"""Command header: the subject to publish the reply to."""
BODY_REF_HEADER = "Sagaloom-Body-Ref"
"""Header of a message whose body is too large for the broker: ``<bucket>/<object name>``, an
object in the broker's JetStream object store holding the body; the message's own body is empty.
"""
BODY_DIGEST_HEADER = "Sagaloom-Body-Sha256"
"""With :data:`BODY_REF_HEADER`: the lower-case SHA-256 hex digest of the stored body."""
BODY_BYTES_HEADER = "Sagaloom-Body-Bytes"
"""With :data:`BODY_REF_HEADER`: the stored body's size in bytes."""
NAMESPACE_HEADER = "Sagaloom-Namespace"
"""Command header: the Temporal namespace of the saga (a participant names a stored reply body
``<namespace>/<saga id>/<sha256>``, so it is removed with the saga's history)."""
DEAD_REASON = "Sagaloom-Dead-Reason"
"""Dead-letter header: why the message could not be processed."""
DEAD_SUBJECT = "Sagaloom-Dead-Subject"
"""Dead-letter header: the subject the message was first published to."""

_TOKEN = re.compile(r"^[A-Za-z0-9_-]+$")
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


def subject_problem(subject: str) -> str | None:
    """Why ``subject`` cannot be a command or trigger subject (None: it can)."""
    tokens = subject.split(".")
    if not subject or not all(_TOKEN.match(t) for t in tokens):
        return f"subject {subject!r} must be dot-separated tokens of letters, digits, '_' or '-'"
    return None


def command_subject(subject: str) -> str:
    """The subject a command for ``subject`` is published on (default namespace)."""
    return _DEFAULT_NAMES.command_subject(subject)


def event_subject(saga: str, workflow_id: str) -> str:
    """The subject of a saga run's lifecycle events (default namespace)."""
    return _DEFAULT_NAMES.event_subject(saga, workflow_id)


DEFAULT_NAMESPACE = "sagaloom"
"""The broker namespace whose names are the constants above."""
_NAMESPACE = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")


def namespace_problem(namespace: str) -> str | None:
    """Why ``namespace`` cannot name a broker namespace (None: it can)."""
    if not _NAMESPACE.match(namespace):
        return (
            f"broker namespace {namespace!r} must be 1-32 lower-case letters, digits, '_' or '-', "
            "starting with a letter"
        )
    return None


@dataclass(frozen=True)
class BrokerNames:
    """Every subject, stream and durable consumer name of one broker namespace.

    Two applications on one NATS server with different namespaces share nothing: not a
    subject, a stream, a consumer nor a dead letter (``SAGALOOM_NATS_NAMESPACE``). The default,
    ``sagaloom``, gives the names of the constants above.
    """

    namespace: str = DEFAULT_NAMESPACE

    def __post_init__(self) -> None:
        problem = namespace_problem(self.namespace)
        if problem is not None:
            raise ValueError(problem)

    def _stream(self, kind: str) -> str:
        return f"{self.namespace.upper().replace('-', '_')}_{kind}"

    @property
    def commands_stream(self) -> str:
        """Stream of commands (``SAGALOOM_COMMANDS`` by default)."""
        return self._stream("COMMANDS")

    @property
    def replies_stream(self) -> str:
        """Stream of replies."""
        return self._stream("REPLIES")

    @property
    def events_stream(self) -> str:
        """Stream of lifecycle events."""
        return self._stream("EVENTS")

    @property
    def dead_stream(self) -> str:
        """Stream of dead letters."""
        return self._stream("DEAD")

    @property
    def triggers_stream(self) -> str:
        """Stream capturing the trigger subjects."""
        return self._stream("TRIGGERS")

    @property
    def bodies_bucket(self) -> str:
        """Object store bucket of bodies too large for a message (``sagaloom-bodies``)."""
        return f"{self.namespace}-bodies"

    @property
    def command_prefix(self) -> str:
        """Commands go below it (``sagaloom.cmd``)."""
        return f"{self.namespace}.cmd"

    @property
    def reply_subject(self) -> str:
        """Where participants reply (``sagaloom.replies``)."""
        return f"{self.namespace}.replies"

    @property
    def events_prefix(self) -> str:
        """Lifecycle events go below it."""
        return f"{self.namespace}.events"

    @property
    def dead_prefix(self) -> str:
        """Dead letters go below it (``.reply``, ``.trigger``)."""
        return f"{self.namespace}.dead"

    @property
    def reply_consumer(self) -> str:
        """The durable consumer of replies every worker of the namespace shares."""
        return f"{self.namespace}-replies"

    def trigger_consumer(self, saga: str, subject: str) -> str:
        """The durable consumer of one trigger."""
        return f"{self.namespace}-trigger-{saga}-{_UNSAFE.sub('_', subject)}"

    def command_subject(self, subject: str) -> str:
        """The subject a command for ``subject`` is published on."""
        return f"{self.command_prefix}.{subject}"

    def event_subject(self, saga: str, workflow_id: str) -> str:
        """The subject of a saga run's lifecycle events (the id's unsafe characters as ``_``)."""
        return f"{self.events_prefix}.{saga}.{_UNSAFE.sub('_', workflow_id)}"

    def streams(self) -> tuple[tuple[str, str], ...]:
        """The engine's streams and the subjects each captures (not the triggers')."""
        return (
            (self.commands_stream, f"{self.command_prefix}.>"),
            (self.replies_stream, self.reply_subject),
            (self.events_stream, f"{self.events_prefix}.>"),
            (self.dead_stream, f"{self.dead_prefix}.>"),
        )


_DEFAULT_NAMES = BrokerNames()
