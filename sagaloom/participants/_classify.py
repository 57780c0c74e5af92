"""Classification of participant failures into retryable and non-retryable errors.

Connect errors, timeouts, 5xx, 408, 425 and 429 are retryable (``Retry-After``, seconds or an
HTTP date, becomes the next retry delay); every other 4xx is non-retryable and fails the step at
once, which starts compensation without undoing it (a refusal). A 3xx (redirects are not
followed) or 1xx is ``UnexpectedStatus``: non-retryable, but the call may have taken effect, so
the step is undone.
Error messages carry the status and a short body with credentials redacted. Refusals and
unavailability are expected (:data:`EXPECTED`: the SDK logs them at DEBUG, no traceback); an
unexpected status, an unreadable answer and an unknown service stay loud.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime

import httpx
from temporalio.exceptions import ApplicationError, ApplicationErrorCategory

from sagaloom._wire._names import (
    MALFORMED_RESPONSE,
    PARTICIPANT_REJECTED,
    PARTICIPANT_UNAVAILABLE,
    UNEXPECTED_STATUS,
)

__all__ = [
    "EXPECTED",
    "MALFORMED_RESPONSE",
    "PARTICIPANT_REJECTED",
    "PARTICIPANT_UNAVAILABLE",
    "UNEXPECTED_STATUS",
    "UNKNOWN_SERVICE",
    "classify_response",
    "classify_transport_error",
    "redact",
    "retry_after",
]

UNKNOWN_SERVICE = "UnknownService"
"""Retryable: the step names a service the worker has no URL for (a configuration mistake,
logged as an error on every attempt; never a participant's refusal)."""

EXPECTED = ApplicationErrorCategory.BENIGN
"""The category of a failure that is the saga's business, not a bug: a participant's refusal,
its being unavailable for a while, a breaker that holds a call. The SDK logs such a failure at
DEBUG, without a traceback, and counts no failure metric; the saga logs one line when a step
fails for good. A failure that is a bug (an unknown service, an unreadable answer, an exception
of your own activity) keeps the SDK's warning and its traceback."""

_RETRYABLE_4XX = frozenset({408, 425, 429})
_BODY_LIMIT = 300
_SECRET = re.compile(
    r"(?i)(\"?(?:authorization|api[_-]?key|token|password|secret)\"?\s*[:=]\s*\"?)"
    r"((?:bearer|basic)\s+[^\",\s}]+|[^\",\s}]+)"
)


_BEARER = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]+")


def redact(text: str, limit: int = _BODY_LIMIT, secrets: Sequence[str] = ()) -> str:
    """Shorten ``text`` and mask anything that looks like a credential, and every ``secrets``."""
    for secret in secrets:
        text = text.replace(secret, "***")
    text = _SECRET.sub(r"\1***", text.replace("\n", " "))
    text = _BEARER.sub(r"\1 ***", text)
    return text if len(text) <= limit else text[:limit] + "…"


MAX_RETRY_AFTER = timedelta(days=1)
"""The longest ``Retry-After`` honoured; more (or ``inf``) is clamped to it."""


def retry_after(response: httpx.Response) -> timedelta | None:
    """Parse a ``Retry-After`` header (seconds or HTTP date) into a delay, if any."""
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:  # "inf", "1e400" or absurdly large: at most a day (the step's budget ends it sooner)
        if math.isnan(seconds):
            return None
        return timedelta(seconds=min(max(0.0, seconds), MAX_RETRY_AFTER.total_seconds()))
    try:
        when = parsedate_to_datetime(value)
        sent = response.headers.get("Date")
        now = parsedate_to_datetime(sent) if sent else datetime.now(UTC)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # an obsolete date form without a zone: GMT, as HTTP says
        when = when.replace(tzinfo=UTC)
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    return min(max(timedelta(0), when - now), MAX_RETRY_AFTER)


def classify_response(
    response: httpx.Response, what: str, attempt: int, secrets: Sequence[str] = ()
) -> ApplicationError:
    """Turn a non-2xx response into the ``ApplicationError`` the activity raises.

    Args:
        response: The participant's response.
        what: Short description of the call, for example ``"payment POST /charges"``.
        attempt: The activity attempt, reported in the error details.
        secrets: Values to mask wherever they appear (the call's credentials).

    Returns:
        A retryable or non-retryable error naming the status and a redacted body.
    """
    status = response.status_code
    message = f"{what} -> HTTP {status}: {redact(response.text, secrets=secrets)}"
    details = {"status": status, "attempt": attempt}
    if status >= 500 or status in _RETRYABLE_4XX:
        return ApplicationError(
            message,
            details,
            type=PARTICIPANT_UNAVAILABLE,
            next_retry_delay=retry_after(response),
            category=EXPECTED,
        )
    if not 400 <= status < 500:  # a 3xx (not followed) or 1xx: it may have taken effect
        where = response.headers.get("Location")
        return ApplicationError(
            f"{message} (not a refusal: redirects are not followed"
            f"{f', Location: {redact(where, secrets=secrets)}' if where else ''}; "
            "the outcome is unknown, so the step is undone)",
            details,
            type=UNEXPECTED_STATUS,
            non_retryable=True,
        )
    return ApplicationError(
        message, details, type=PARTICIPANT_REJECTED, non_retryable=True, category=EXPECTED
    )


def classify_transport_error(
    err: httpx.HTTPError, what: str, attempt: int, secrets: Sequence[str] = ()
) -> ApplicationError:
    """Turn a transport error (connect, timeout, protocol) into a retryable ``ApplicationError``."""
    reason = type(err).__name__
    if str(err):
        reason = f"{reason}: {redact(str(err), 120, secrets)}"
    return ApplicationError(
        f"{what} -> {reason}", {"attempt": attempt}, type=PARTICIPANT_UNAVAILABLE, category=EXPECTED
    )
