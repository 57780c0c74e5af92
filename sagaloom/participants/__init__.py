"""Participant calls: the HTTP participant, idempotency keys, error classification.

The engine's HTTP participant is one Temporal activity (``sagaloom.http``) with a pooled
``httpx`` client; :class:`~sagaloom.worker.SagaloomPlugin` registers it. Its request and
response models and error types are here for participant-side code and tests.
"""

from sagaloom._model import HttpRequest, HttpResponse
from sagaloom._names import HTTP_ACTIVITY
from sagaloom._public import publish as _publish
from sagaloom.participants._errors import (
    MALFORMED_RESPONSE,
    PARTICIPANT_REJECTED,
    PARTICIPANT_UNAVAILABLE,
    UNKNOWN_SERVICE,
    classify_response,
    classify_transport_error,
    redact,
    retry_after,
)
from sagaloom.participants._http import HttpParticipant
from sagaloom.participants._idempotency import IDEMPOTENCY_HEADER, idempotency_key

__all__ = [
    "HTTP_ACTIVITY",
    "IDEMPOTENCY_HEADER",
    "MALFORMED_RESPONSE",
    "PARTICIPANT_REJECTED",
    "PARTICIPANT_UNAVAILABLE",
    "UNKNOWN_SERVICE",
    "HttpParticipant",
    "HttpRequest",
    "HttpResponse",
    "classify_response",
    "classify_transport_error",
    "idempotency_key",
    "redact",
    "retry_after",
]

_publish(globals(), __all__, __name__)
