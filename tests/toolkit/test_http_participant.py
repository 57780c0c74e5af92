"""The HTTP participant's headers and error classification (httpx MockTransport, no network)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest
from pydantic import SecretStr
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from sagaloom._wire._reply_auth import ReplySigner
from sagaloom.participants import (
    CORRELATION_HEADER,
    MALFORMED_RESPONSE,
    PARTICIPANT_REJECTED,
    PARTICIPANT_UNAVAILABLE,
    TOKEN_HEADER,
    UNKNOWN_SERVICE,
    HttpParticipant,
    HttpRequest,
    HttpResponse,
    redact,
)

REQUEST = HttpRequest(service="payment", method="POST", path="/charges", body={"order_id": "o-1"})
Handler = Callable[[httpx.Request], httpx.Response]


async def call(
    handler: Handler, request: HttpRequest = REQUEST, replies: ReplySigner | None = None
) -> tuple[HttpResponse, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def record(req: httpx.Request) -> httpx.Response:
        seen.append(req)
        return handler(req)

    client = httpx.AsyncClient(transport=httpx.MockTransport(record))
    participant = HttpParticipant(
        {"payment": "http://payment.test/"}, client=client, replies=replies
    )
    env = ActivityEnvironment()
    env.info = env.info.__class__(
        **{
            **env.info.__dict__,
            "workflow_id": "OrderSaga-o-1",
            "activity_id": "charge-payment",
            "attempt": 3,
            "start_to_close_timeout": timedelta(seconds=5),
        }
    )
    try:
        return await env.run(participant.call, request), seen
    finally:
        await client.aclose()


async def failure(handler: Handler, request: HttpRequest = REQUEST) -> ApplicationError:
    with pytest.raises(ApplicationError) as caught:
        await call(handler, request)
    return caught.value


async def test_sends_json_and_a_stable_idempotency_key() -> None:
    response, seen = await call(lambda r: httpx.Response(201, json={"id": "chg-1"}))
    assert response == HttpResponse(status=201, body={"id": "chg-1"}, attempt=3)
    assert str(seen[0].url) == "http://payment.test/charges"
    assert seen[0].headers["Idempotency-Key"] == "OrderSaga-o-1:charge-payment"
    assert seen[0].read() == b'{"order_id":"o-1"}'


async def test_every_command_carries_its_correlation_id_and_a_token_any_worker_can_check() -> None:
    # participants.md: "Every command carries `Sagaloom-Correlation-Id: <workflow id>:<step>` and
    # `Sagaloom-Reply-Token`", an HMAC under the workers' shared SAGALOOM_REPLY_SECRET: another
    # worker with the same secret takes the reply; one with its own secret cannot.
    shared = SecretStr("one-secret-for-every-worker")
    _, seen = await call(lambda r: httpx.Response(200, json={}), replies=ReplySigner(shared))
    correlation = seen[0].headers[CORRELATION_HEADER]
    assert correlation == "OrderSaga-o-1:charge-payment"
    token = seen[0].headers[TOKEN_HEADER]
    assert ReplySigner(shared).verify(correlation, token)  # another worker, the same secret
    assert not ReplySigner().verify(correlation, token)  # a worker that made its own
    assert not ReplySigner(shared).verify("OrderSaga-o-1:create-shipment", token)


@pytest.mark.parametrize("status", [500, 502, 503, 504, 408, 425, 429])
async def test_server_errors_timeouts_and_throttling_are_retryable(status: int) -> None:
    err = await failure(lambda r: httpx.Response(status, text="busy"))
    assert err.type == PARTICIPANT_UNAVAILABLE and not err.non_retryable
    assert f"HTTP {status}" in err.message
    assert err.details[0] == {"status": status, "attempt": 3}


async def test_retry_after_becomes_the_next_retry_delay() -> None:
    err = await failure(lambda r: httpx.Response(429, headers={"Retry-After": "7"}))
    assert err.next_retry_delay == timedelta(seconds=7)


async def test_retry_after_as_an_http_date_on_a_503_is_honoured() -> None:
    headers = {
        "Retry-After": "Wed, 21 Oct 2026 07:28:30 GMT",
        "Date": "Wed, 21 Oct 2026 07:28:00 GMT",
    }
    err = await failure(lambda r: httpx.Response(503, headers=headers))
    assert err.type == PARTICIPANT_UNAVAILABLE and not err.non_retryable
    assert err.next_retry_delay == timedelta(seconds=30)


async def test_retry_after_as_an_http_date_without_a_date_header_counts_from_now() -> None:
    later = datetime.now(UTC) + timedelta(seconds=40)
    headers = {"Retry-After": format_datetime(later, usegmt=True)}
    err = await failure(lambda r: httpx.Response(503, headers=headers))
    assert err.next_retry_delay is not None
    assert timedelta(seconds=35) < err.next_retry_delay <= timedelta(seconds=40)


@pytest.mark.parametrize("status", [400, 402, 404, 409, 422])
async def test_other_4xx_are_non_retryable_with_status_and_short_redacted_body(status: int) -> None:
    body = '{"error": "declined", "api_key": "sk_live_123"}' + "x" * 1000
    err = await failure(lambda r: httpx.Response(status, text=body))
    assert err.type == PARTICIPANT_REJECTED and err.non_retryable
    assert f"payment POST /charges -> HTTP {status}" in err.message
    assert "sk_live_123" not in err.message and "declined" in err.message
    assert len(err.message) < 400


async def test_connect_errors_and_timeouts_are_retryable() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    for handler in (refuse, slow):
        err = await failure(handler)
        assert err.type == PARTICIPANT_UNAVAILABLE and not err.non_retryable


async def test_a_2xx_body_that_is_not_json_is_a_clear_non_retryable_error() -> None:
    err = await failure(lambda r: httpx.Response(200, text="<html>oops</html>"))
    assert err.type == MALFORMED_RESPONSE and err.non_retryable
    assert "not JSON" in err.message


async def test_an_unknown_service_names_the_variable_to_set() -> None:
    err = await failure(
        lambda r: httpx.Response(200), REQUEST.model_copy(update={"service": "tax"})
    )
    # A configuration mistake, not a refusal: retried (and logged), never compensated as a "no".
    assert err.type == UNKNOWN_SERVICE and not err.non_retryable
    assert "SAGALOOM_SERVICE_TAX" in err.message


def test_redact_masks_credentials() -> None:
    assert redact("Authorization: Bearer abc token=xyz") == "Authorization: *** token=***"
    assert redact('{"password": "hunter2", "ok": 1}') == '{"password": "***", "ok": 1}'


@pytest.mark.parametrize("value", ["inf", "1e400", "99999999999999999999", "-inf"])
async def test_an_absurd_retry_after_is_clamped_and_still_reads_as_unavailable(value: str) -> None:
    """Before: ``inf`` raised OverflowError in the parser; the step's error read as a crash."""
    err = await failure(lambda r: httpx.Response(503, headers={"Retry-After": value}))
    assert err.type == "ParticipantUnavailable" and not err.non_retryable
    assert err.next_retry_delay is not None
    assert timedelta(0) <= err.next_retry_delay <= timedelta(days=1)


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308, 304, 101])
async def test_a_redirect_or_informational_answer_is_an_unknown_outcome(status: int) -> None:
    err = await failure(lambda r: httpx.Response(status, headers={"Location": "/elsewhere"}))
    assert err.type == "UnexpectedStatus" and err.non_retryable
    assert f"HTTP {status}" in err.message and "redirects are not followed" in err.message
