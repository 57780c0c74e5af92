"""Reply intake: one way to read, check and hand over a participant's reply, for every transport.

The worker's HTTP endpoint (``POST /replies``) and its broker consumer (``sagaloom.replies``)
both call :func:`read_reply` then :func:`hand_over`, and map the :class:`Intake` verdict to
their own answer (an HTTP status; an ack, a re-delivery or a dead letter). Nothing here raises
for bad input: every failure is a verdict with a one-line reason.
"""

from __future__ import annotations

import asyncio
import enum
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from temporalio.client import Client, RPCTimeoutOrCancelledError, WorkflowUpdateFailedError
from temporalio.service import RPCError, RPCStatusCode

from sagaloom._saga._model import MAX_REPLY_BYTES, Reply, reply_problem
from sagaloom._wire._names import REPLY_UPDATE, reply_activity_id, saga_of
from sagaloom._wire._reply_auth import ReplySigner

__all__ = ["Intake", "ReplyRequest", "Verdict", "deliver", "hand_over", "read_reply"]


class ReplyRequest(BaseModel):
    """A participant's reply, over HTTP or the broker."""

    model_config = ConfigDict(extra="forbid", strict=True)

    correlation_id: str = Field(min_length=3, max_length=600)
    """The command's ``Sagaloom-Correlation-Id`` header."""
    token: str = Field(min_length=1, max_length=200)
    """The command's ``Sagaloom-Reply-Token`` header."""
    ok: bool
    """Whether the participant did what it was asked (no default: say it)."""
    data: dict[str, Any] = Field(default_factory=dict)
    """What it reports (becomes the step's output)."""
    reason: str = Field(default="", max_length=1000)
    """Why it said no."""


class Verdict(enum.Enum):
    """What became of a reply."""

    ACCEPTED = "accepted"
    MALFORMED = "malformed"
    """Not JSON, too deep, or not a reply's fields."""
    UNAUTHORIZED = "unauthorized"
    """The token is missing or not the correlation id's."""
    TOO_LARGE = "too large"
    REFUSED = "refused"
    """The saga does not wait for it: late, duplicate or unexpected."""
    GONE = "gone"
    """No such saga, or it already ended."""
    RETRY = "retry"
    """A passing failure (Temporal unreachable or slow): try again later."""


@dataclass(frozen=True)
class Intake:
    """A verdict and, unless accepted, why (one line)."""

    verdict: Verdict
    why: str = ""
    reply: Reply | None = None


def read_reply(raw: bytes | str, signer: ReplySigner, limit: int = MAX_REPLY_BYTES) -> Intake:
    """Parse and check a reply's body: its fields, its token, its size (at most ``limit``).

    Returns:
        ``ACCEPTED`` with the :class:`Reply` to hand over, or why it is refused.
    """
    try:
        parsed = json.loads(raw)
    except (ValueError, RecursionError):
        return Intake(Verdict.MALFORMED, "body is not JSON (or is nested too deeply)")
    try:
        body = ReplyRequest.model_validate(parsed)
    except ValidationError as err:
        fields = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '<body>'}: {e['msg']}" for e in err.errors()
        )
        return Intake(Verdict.MALFORMED, f"not a reply; check: {fields}")
    except RecursionError:
        return Intake(Verdict.MALFORMED, "body is nested too deeply")
    if not signer.verify(body.correlation_id, body.token):
        return Intake(Verdict.UNAUTHORIZED, "missing or wrong reply token")
    reply = Reply(
        correlation_id=body.correlation_id, ok=body.ok, data=body.data, reason=body.reason
    )
    problem = reply_problem(reply, limit)
    if problem is not None:
        return Intake(Verdict.TOO_LARGE if "bytes" in problem else Verdict.MALFORMED, problem)
    return Intake(Verdict.ACCEPTED, reply=reply)


async def deliver(client: Client, reply: Reply) -> None:
    """Hand a checked reply to its saga: the result of its open ask, else the update.

    A command sent by the ask activity (``sagaloom.nats.ask``) keeps it open until the reply
    completes it by its activity id: one event and one workflow task, as an activity's result.
    When no ask is open under that id (a reply between two sends of an undo, to a saga started
    before the ask, or late), the ``participant_reply`` update takes it, whose validator refuses
    what the saga does not wait for.

    Raises:
        WorkflowUpdateFailedError: the saga refused it. RPCError: as the client raises it.
    """
    workflow_id = saga_of(reply.correlation_id)
    ask = client.get_async_activity_handle(
        workflow_id=workflow_id, run_id=None, activity_id=reply_activity_id(reply.correlation_id)
    )
    try:
        await ask.complete(reply)
        return
    except RPCError as err:
        if err.status is not RPCStatusCode.NOT_FOUND:
            raise
    await client.get_workflow_handle(workflow_id).execute_update(REPLY_UPDATE, reply)


async def hand_over(
    deliver: Callable[[Reply], Awaitable[None]], reply: Reply, within: float
) -> Intake:
    """Hand a checked reply to its saga (the ``participant_reply`` update).

    Returns:
        ``ACCEPTED``, ``REFUSED`` (the saga's validator said why), ``GONE``, or ``RETRY`` when
        Temporal is unreachable, slow (the update's RPC timed out), or the saga cannot take
        updates for now (its workflow task failed while a worker restarts).
    """
    try:
        await asyncio.wait_for(deliver(reply), within)
    except WorkflowUpdateFailedError as err:
        cause = getattr(err.cause, "message", None) or str(err.cause or err)
        return Intake(Verdict.REFUSED, cause, reply)
    except RPCError as err:
        if err.status is RPCStatusCode.NOT_FOUND:
            return Intake(Verdict.GONE, "the saga is finished or unknown", reply)
        return Intake(Verdict.RETRY, f"Temporal: {err.message}", reply)
    except RPCTimeoutOrCancelledError as err:
        return Intake(Verdict.RETRY, f"Temporal did not answer in time: {err}", reply)
    except (TimeoutError, OSError, RuntimeError) as err:
        return Intake(Verdict.RETRY, f"Temporal unreachable: {err or type(err).__name__}", reply)
    return Intake(Verdict.ACCEPTED, reply=reply)
