"""The runtime tests' participant: the public ``ScriptedParticipant``, answering by plan.

Each call's body names the test run (``run``) and what to do (``do``): the plan's answer below.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import defaultdict
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

from sagaloom.participants import HttpRequest, idempotency_key
from sagaloom.testing import ScriptedParticipant

CALLS: dict[str, list[tuple[str, dict[str, Any]]]] = defaultdict(list)
ENDED: dict[str, list[tuple[str, float]]] = defaultdict(list)
"""When each call returned (monotonic clock), by run: ``(path, time)``."""
STARTED: dict[str, list[tuple[str, float]]] = defaultdict(list)
"""When each call arrived (monotonic clock), by run: ``(path, time)``."""
GATES: dict[str, asyncio.Event] = defaultdict(asyncio.Event)
"""Gates by ``<run><path>``: a call planned ``gate`` waits until the test sets its gate."""
FIXED: set[str] = set()
"""``<run><path>`` of calls planned ``down-until-fixed`` / ``refuse-until-fixed`` whose
participant the test has fixed (they answer ok from then on)."""
KEYS: dict[str, list[tuple[str, str]]] = defaultdict(list)
"""Each call's ``(path, Idempotency-Key)``, by run."""


async def by_plan(request: HttpRequest) -> dict[str, Any]:
    """Record the call under the plan's run id, then do what the plan says for this path."""
    body = request.body or {}
    STARTED[body["run"]].append((request.path, time.monotonic()))
    try:
        return await _answer(request, body)
    finally:
        ENDED[body["run"]].append((request.path, time.monotonic()))


async def _answer(request: HttpRequest, body: dict[str, Any]) -> dict[str, Any]:
    CALLS[body["run"]].append((request.path, body))
    KEYS[body["run"]].append((request.path, idempotency_key()))
    fixed = f"{body['run']}{request.path}" in FIXED
    first = sum(path == request.path for path, _ in CALLS[body["run"]]) == 1
    match body["do"]:
        case "reject-once" if first:
            raise ApplicationError("refused once", type="Rejected", non_retryable=True)
        case "fail-once" if first:
            raise ApplicationError("blip", type="Unavailable")
        case "reject":
            raise ApplicationError("refused", type="Rejected", non_retryable=True)
        case "down-until-fixed" if not fixed:  # a bad deploy answering 500 until its fix
            raise ApplicationError("HTTP 500: bad deploy", type="ParticipantUnavailable")
        case "refuse-until-fixed" if not fixed:  # a bad deploy answering a wrong 400
            raise ApplicationError(
                "HTTP 400: bad deploy", type="ParticipantRejected", non_retryable=True
            )
        case "unavailable":
            raise ApplicationError("try later", type="Unavailable")
        case "malformed":
            return {"unexpected": True}
        case "big":  # an answer of 300 kB
            return {"id": "big-1", "blob": "x" * 300_000}
        case "10kb":  # an answer of 10 kB, different for each item
            return {"id": f"{request.path}", "blob": (request.path * 10_000)[:10_000]}
        case "slow":  # a while, heartbeating so a cancellation gets through
            for _ in range(20):
                if not activity.info().is_local:
                    activity.heartbeat()
                await asyncio.sleep(0.1)
        case "brief":  # a fifth of a second: long enough for an undo's order to show
            await asyncio.sleep(0.2)
        case "deaf":  # a while, without heartbeats: a cancellation cannot reach it, it finishes
            await asyncio.sleep(1.5)
        case "gate":  # until the test opens its gate (heartbeating: a cancel gets through)
            gate = GATES[f"{body['run']}{request.path}"]
            while not gate.is_set():
                if not activity.info().is_local:
                    activity.heartbeat()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(gate.wait(), 0.1)
        case "hang":  # until the saga is cancelled (delivered through the heartbeat)
            while True:
                if not activity.info().is_local:
                    activity.heartbeat()
                await asyncio.sleep(0.1)
    name = request.path.strip("/").split("/")[0]
    return {"id": f"{name}-1"}


PARTICIPANT = ScriptedParticipant(default=by_plan)
"""Every call answered by plan (and recorded in ``PARTICIPANT.calls`` too)."""
scripted = PARTICIPANT.call
"""The activity to register in place of the HTTP participant."""
