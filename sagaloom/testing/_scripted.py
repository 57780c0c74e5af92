"""A scripted stand-in for HTTP participants: answers as a test says, records every call."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from temporalio import activity

from sagaloom._saga._model import HttpRequest, HttpResponse
from sagaloom._wire._names import HTTP_ACTIVITY

__all__ = ["Answer", "ScriptedParticipant"]

Answer = (
    Any | BaseException | Callable[[HttpRequest], Any] | Callable[[HttpRequest], Awaitable[Any]]
)
"""What a scripted call does: return this JSON body, raise this exception, or call this
(a function or a coroutine function of the request, returning the body or raising)."""


class ScriptedParticipant:
    """Answers a saga's HTTP steps in-process, without any service running.

    Register ``participant.call`` on a test worker in place of the real HTTP participant
    (``SagaloomPlugin(http=False)``, or the environment's ``worker(..., participant=...)``)::

        participant = ScriptedParticipant({
            "payment POST /charges": ApplicationError("declined", non_retryable=True),
        })

    A call not in the script gets ``default`` (200 with ``{}`` unless told). Raise
    ``ApplicationError`` to fail an attempt (non-retryable: the participant refused); an async
    answer may take its time (heartbeat with ``activity.heartbeat()`` so a cancel reaches it).
    ``calls`` records every request, in order, as ``(key, request)`` with key
    ``"<service> <METHOD> <path>"``.
    """

    def __init__(
        self, script: Mapping[str, Answer] | None = None, *, default: Answer = None
    ) -> None:
        self.script = dict(script or {})
        """Answers by ``"<service> <METHOD> <path>"``."""
        self.default: Answer = {} if default is None else default
        """The answer to a call not in the script."""
        self.calls: list[tuple[str, HttpRequest]] = []
        """Every request received, in order."""

    def keys(self) -> list[str]:
        """The keys of the calls received, in order."""
        return [key for key, _ in self.calls]

    @activity.defn(name=HTTP_ACTIVITY)
    async def call(self, request: HttpRequest) -> HttpResponse:
        """Record the call and answer it as scripted."""
        key = f"{request.service} {request.method.upper()} {request.path}"
        self.calls.append((key, request))
        answer = self.script.get(key, self.default)
        if isinstance(answer, BaseException):
            raise answer
        if callable(answer):
            answer = answer(request)
            if inspect.isawaitable(answer):
                answer = await answer
        return HttpResponse(status=200, body=answer, attempt=activity.info().attempt)
