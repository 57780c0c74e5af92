"""Participant calls: HTTP participant, idempotency keys, errors, and the broker protocol.

The broker protocol's subjects and headers are what an event-driven participant codes
against (see ``docs/contracts`` and docs/event-driven.md).

The engine's HTTP participant is one Temporal activity (``sagaloom.http``) with a pooled
``httpx`` client; :class:`~sagaloom.worker.SagaloomPlugin` registers it. Its request and
response models and error types are here for participant-side code and tests.
"""

from sagaloom._public import publish as _publish
from sagaloom._saga._model import BrokerCommand, HttpRequest, HttpResponse
from sagaloom._saga._outage import BREAKER_OPEN, OUTAGE_BUDGET_SPENT, BreakerSettings
from sagaloom._wire._names import HTTP_ACTIVITY
from sagaloom._wire._protocol import (
    BODY_BYTES_HEADER,
    BODY_DIGEST_HEADER,
    BODY_REF_HEADER,
    COMMAND_PREFIX,
    COMMANDS_STREAM,
    DEAD_PREFIX,
    DEAD_REASON,
    DEAD_STREAM,
    DEAD_SUBJECT,
    DEFAULT_NAMESPACE,
    EVENTS_PREFIX,
    EVENTS_STREAM,
    MSG_ID,
    NAMESPACE_HEADER,
    REPLIES_STREAM,
    REPLY_SUBJECT,
    REPLY_TO_HEADER,
    TRIGGERS_STREAM,
    BrokerNames,
    command_subject,
    event_subject,
)
from sagaloom._wire._reply_auth import CORRELATION_HEADER, TOKEN_HEADER
from sagaloom.participants._breakers import Breakers
from sagaloom.participants._classify import (
    MALFORMED_RESPONSE,
    PARTICIPANT_REJECTED,
    PARTICIPANT_UNAVAILABLE,
    UNEXPECTED_STATUS,
    UNKNOWN_SERVICE,
    classify_response,
    classify_transport_error,
    redact,
    retry_after,
)
from sagaloom.participants._http_activity import HttpParticipant
from sagaloom.participants._idempotency import IDEMPOTENCY_HEADER, idempotency_key

__all__ = [
    "BODY_BYTES_HEADER",
    "BODY_DIGEST_HEADER",
    "BODY_REF_HEADER",
    "BREAKER_OPEN",
    "COMMANDS_STREAM",
    "COMMAND_PREFIX",
    "CORRELATION_HEADER",
    "DEAD_PREFIX",
    "DEAD_REASON",
    "DEAD_STREAM",
    "DEAD_SUBJECT",
    "DEFAULT_NAMESPACE",
    "EVENTS_PREFIX",
    "EVENTS_STREAM",
    "HTTP_ACTIVITY",
    "IDEMPOTENCY_HEADER",
    "MALFORMED_RESPONSE",
    "MSG_ID",
    "NAMESPACE_HEADER",
    "OUTAGE_BUDGET_SPENT",
    "PARTICIPANT_REJECTED",
    "PARTICIPANT_UNAVAILABLE",
    "REPLIES_STREAM",
    "REPLY_SUBJECT",
    "REPLY_TO_HEADER",
    "TOKEN_HEADER",
    "TRIGGERS_STREAM",
    "UNEXPECTED_STATUS",
    "UNKNOWN_SERVICE",
    "BreakerSettings",
    "Breakers",
    "BrokerCommand",
    "BrokerNames",
    "HttpParticipant",
    "HttpRequest",
    "HttpResponse",
    "classify_response",
    "classify_transport_error",
    "command_subject",
    "event_subject",
    "idempotency_key",
    "redact",
    "retry_after",
]

_publish(globals(), __all__, __name__)
