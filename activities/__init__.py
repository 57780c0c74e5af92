"""Participant calls: the HTTP participant, idempotency keys and error classification."""

from activities._errors import (
    MALFORMED_RESPONSE,
    PARTICIPANT_REJECTED,
    PARTICIPANT_UNAVAILABLE,
    UNKNOWN_SERVICE,
    classify_response,
    classify_transport_error,
    redact,
    retry_after,
)
from activities._http import HttpParticipant
from activities._idempotency import IDEMPOTENCY_HEADER, idempotency_key

__all__ = [
    "IDEMPOTENCY_HEADER",
    "MALFORMED_RESPONSE",
    "PARTICIPANT_REJECTED",
    "PARTICIPANT_UNAVAILABLE",
    "UNKNOWN_SERVICE",
    "HttpParticipant",
    "classify_response",
    "classify_transport_error",
    "idempotency_key",
    "redact",
    "retry_after",
]
