"""Reply intake, the one path HTTP and NATS replies share: verdicts for every kind of input."""

from __future__ import annotations

import json

import pytest
from pydantic import SecretStr
from temporalio.client import WorkflowUpdateRPCTimeoutOrCancelledError
from temporalio.service import RPCError, RPCStatusCode

from sagaloom import Reply
from sagaloom._wire._reply_auth import ReplySigner
from sagaloom.client._intake import Verdict, hand_over, read_reply

SIGNER = ReplySigner(SecretStr("intake-secret"))


def body(correlation: str = "Saga-1:pay", token: str | None = None, **extra: object) -> bytes:
    token = SIGNER.token(correlation) if token is None else token
    return json.dumps({"correlation_id": correlation, "token": token, "ok": True, **extra}).encode()


@pytest.mark.parametrize(
    ("raw", "verdict"),
    [
        (body(), Verdict.ACCEPTED),
        (b"{nope", Verdict.MALFORMED),
        (b"[" * 5000 + b"]" * 5000, Verdict.MALFORMED),
        (json.dumps({"correlation_id": "Saga-1:pay", "ok": True}).encode(), Verdict.MALFORMED),
        (body(token="forged"), Verdict.UNAUTHORIZED),
        (body(token="t\u00f6k\u00e9n"), Verdict.UNAUTHORIZED),
        (body(token="\ud800"), Verdict.MALFORMED),  # a lone surrogate: not a string
        (body(data={"blob": "x" * 70_000}), Verdict.TOO_LARGE),
    ],
    ids=["ok", "not-json", "too-deep", "no-token", "forged", "non-ascii", "surrogate", "big"],
)
def test_every_body_gets_a_verdict_never_an_exception(raw: bytes, verdict: Verdict) -> None:
    assert read_reply(raw, SIGNER).verdict is verdict


@pytest.mark.parametrize(
    ("error", "verdict"),
    [
        (WorkflowUpdateRPCTimeoutOrCancelledError(), Verdict.RETRY),
        (RPCError("unavailable", RPCStatusCode.UNAVAILABLE, b""), Verdict.RETRY),
        (RPCError("gone", RPCStatusCode.NOT_FOUND, b""), Verdict.GONE),
        (TimeoutError(), Verdict.RETRY),
        (OSError("refused"), Verdict.RETRY),
    ],
    ids=["update-rpc-timeout", "unavailable", "not-found", "timeout", "os-error"],
)
async def test_temporal_failures_map_to_retry_or_gone(error: Exception, verdict: Verdict) -> None:
    async def deliver(reply: Reply) -> None:
        raise error

    intake = await hand_over(deliver, Reply(correlation_id="Saga-1:pay"), 1.0)
    assert intake.verdict is verdict and intake.why


def test_step_keys_are_built_and_read_in_one_place() -> None:
    from sagaloom._wire._names import saga_of, step_key
    from sagaloom.participants import idempotency_key

    assert step_key("OrderSaga-o-1", "charge") == "OrderSaga-o-1:charge"
    assert step_key("OrderSaga-o-1", "charge", undo=True) == "OrderSaga-o-1:charge:compensate"
    child = step_key("Trip-t-1", "book-trip")  # a child saga's workflow id
    for key in (step_key(child, "hotel"), step_key(child, "hotel", undo=True)):
        assert saga_of(key) == child
    assert idempotency_key("OrderSaga-o-1", "charge:compensate") == step_key(
        "OrderSaga-o-1", "charge", undo=True
    )
