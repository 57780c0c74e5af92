"""A scripted participant for runtime tests: each call does what the saga's plan says."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import defaultdict
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

from sagaloom.participants import HTTP_ACTIVITY, HttpRequest, HttpResponse

CALLS: dict[str, list[tuple[str, dict[str, Any]]]] = defaultdict(list)
ENDED: dict[str, list[tuple[str, float]]] = defaultdict(list)
"""When each call returned (monotonic clock), by run: ``(path, time)``."""
STARTED: dict[str, list[tuple[str, float]]] = defaultdict(list)
"""When each call arrived (monotonic clock), by run: ``(path, time)``."""
GATES: dict[str, asyncio.Event] = defaultdict(asyncio.Event)
"""Gates by ``<run><path>``: a call planned ``gate`` waits until the test sets its gate."""


@activity.defn(name=HTTP_ACTIVITY)
async def scripted(request: HttpRequest) -> HttpResponse:
    """Record the call under the plan's run id, then do what the plan says for this path."""
    body = request.body or {}
    STARTED[body["run"]].append((request.path, time.monotonic()))
    try:
        return await _answer(request, body)
    finally:
        ENDED[body["run"]].append((request.path, time.monotonic()))


async def _answer(request: HttpRequest, body: dict[str, Any]) -> HttpResponse:
    CALLS[body["run"]].append((request.path, body))
    first = sum(path == request.path for path, _ in CALLS[body["run"]]) == 1
    match body["do"]:
        case "reject-once" if first:
            raise ApplicationError("refused once", type="Rejected", non_retryable=True)
        case "fail-once" if first:
            raise ApplicationError("blip", type="Unavailable")
        case "reject":
            raise ApplicationError("refused", type="Rejected", non_retryable=True)
        case "unavailable":
            raise ApplicationError("try later", type="Unavailable")
        case "malformed":
            return HttpResponse(status=200, body={"unexpected": True})
        case "slow":  # a while, heartbeating so a cancellation gets through
            for _ in range(20):
                if not activity.info().is_local:
                    activity.heartbeat()
                await asyncio.sleep(0.1)
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
    return HttpResponse(status=200, body={"id": f"{name}-1"}, attempt=activity.info().attempt)
