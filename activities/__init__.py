"""Participant calls: the HTTP participant, idempotency keys, error classification.

Also a fault-injection kit for testing sagas (:class:`FaultInjector`).
"""

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
from activities._faults import INJECTED_FAULT, Fault, FaultInjector, FaultKind
from activities._http import HttpParticipant
from activities._idempotency import IDEMPOTENCY_HEADER, idempotency_key

__all__ = [
    "IDEMPOTENCY_HEADER",
    "INJECTED_FAULT",
    "MALFORMED_RESPONSE",
    "PARTICIPANT_REJECTED",
    "PARTICIPANT_UNAVAILABLE",
    "UNKNOWN_SERVICE",
    "Fault",
    "FaultInjector",
    "FaultKind",
    "HttpParticipant",
    "classify_response",
    "classify_transport_error",
    "idempotency_key",
    "redact",
    "retry_after",
]
