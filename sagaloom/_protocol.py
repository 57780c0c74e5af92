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

__all__ = [
    "COMMANDS_STREAM",
    "COMMAND_PREFIX",
    "DEAD_PREFIX",
    "DEAD_REASON",
    "DEAD_STREAM",
    "DEAD_SUBJECT",
    "EVENTS_PREFIX",
    "EVENTS_STREAM",
    "IDEMPOTENCY_HEADER",
    "MSG_ID",
    "REPLIES_STREAM",
    "REPLY_SUBJECT",
    "REPLY_TO_HEADER",
    "TRIGGERS_STREAM",
    "command_subject",
    "event_subject",
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
    """The subject a command for ``subject`` is published on."""
    return f"{COMMAND_PREFIX}.{subject}"


def event_subject(saga: str, workflow_id: str) -> str:
    """The subject of a saga run's lifecycle events (the id's unsafe characters as ``_``)."""
    return f"{EVENTS_PREFIX}.{saga}.{_UNSAFE.sub('_', workflow_id)}"
