"""The public scripted participant: answers by key, by default, or by an (async) function."""

from __future__ import annotations

import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from sagaloom.participants import HttpRequest
from sagaloom.testing import ScriptedParticipant


async def test_answers_by_key_then_by_default_and_records_every_call() -> None:
    seen: list[str] = []

    async def later(request: HttpRequest) -> dict[str, str]:
        seen.append(request.path)
        return {"path": request.path}

    participant = ScriptedParticipant(
        {"payment POST /charges": ApplicationError("declined", non_retryable=True),
         "stock POST /holds": lambda r: {"held": r.body}},
        default=later,
    )  # fmt: skip
    env = ActivityEnvironment()
    held = await env.run(
        participant.call, HttpRequest(service="stock", method="post", path="/holds", body={"n": 2})
    )
    assert held.body == {"held": {"n": 2}} and held.status == 200
    other = await env.run(participant.call, HttpRequest(service="ship", method="POST", path="/x"))
    assert other.body == {"path": "/x"} and seen == ["/x"]  # the async default was awaited
    with pytest.raises(ApplicationError, match="declined"):
        await env.run(
            participant.call, HttpRequest(service="payment", method="POST", path="/charges")
        )
    assert participant.keys() == ["stock POST /holds", "ship POST /x", "payment POST /charges"]
    plain = ScriptedParticipant()
    answer = await env.run(plain.call, HttpRequest(service="a", method="GET", path="/"))
    assert answer.body == {}
