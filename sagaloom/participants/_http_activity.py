"""The HTTP participant: one pooled ``httpx.AsyncClient`` per worker behind a Temporal activity."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Coroutine, Mapping
from datetime import timedelta
from typing import Any

import httpx
from pydantic import SecretStr
from temporalio import activity
from temporalio.exceptions import ApplicationError

from sagaloom._saga._model import HttpRequest, HttpResponse
from sagaloom._saga._outage import PROBE_ACTIVITY, UNAVAILABLE_STATUSES
from sagaloom._wire._names import HTTP_ACTIVITY
from sagaloom._wire._reply_auth import CORRELATION_HEADER, TOKEN_HEADER, ReplySigner
from sagaloom.participants._breakers import Breakers
from sagaloom.participants._classify import (
    MALFORMED_RESPONSE,
    UNKNOWN_SERVICE,
    classify_response,
    classify_transport_error,
    redact,
)
from sagaloom.participants._idempotency import IDEMPOTENCY_HEADER, idempotency_key

try:
    from opentelemetry import propagate as _propagate
except ImportError:  # tracing is an optional extra
    _propagate = None  # type: ignore[assignment]

__all__ = ["HttpParticipant"]


class HttpParticipant:
    """Calls participant services over HTTP on behalf of saga steps.

    :class:`~sagaloom.worker.SagaloomPlugin` registers ``participant.call`` on the worker and
    closes the pooled client when the worker stops; by hand, do both yourself.
    Service names used by sagas map to base URLs here, so URLs and credentials stay in worker
    configuration and never enter workflow history.
    """

    def __init__(
        self,
        services: Mapping[str, str],
        *,
        client: httpx.AsyncClient | None = None,
        headers: Mapping[str, str] | None = None,
        tokens: Mapping[str, SecretStr] | None = None,
        heartbeat_every: timedelta = timedelta(seconds=2),
        replies: ReplySigner | None = None,
        breakers: Breakers | None = None,
    ) -> None:
        """Create the participant.

        Args:
            services: Service name to base URL, for example ``{"payment": "http://127.0.0.1:8102"}``.
            client: The pooled client to use; by default one is created (and owned) here.
            headers: Extra headers sent on every call.
            tokens: Bearer token per service name, sent as ``Authorization``. They live only
                here, in worker configuration: never in workflow history, errors or logs.
            heartbeat_every: How often an in-flight call heartbeats, so cancellation and worker
                death are noticed promptly.
            replies: Signs the reply token sent with every command (``Sagaloom-Reply-Token``,
                with ``Sagaloom-Correlation-Id``); by default under a random secret.
            breakers: The per-service breakers asked before a call (for requests that say
                ``breaker``) and told of outages; by default off.
        """
        self._services = {name: url.rstrip("/") for name, url in services.items()}
        self._owns_client = client is None
        self._pool = client
        self._headers = dict(headers or {})
        self._tokens = dict(tokens or {})
        self._heartbeat_every = heartbeat_every.total_seconds()
        self.replies = replies or ReplySigner()
        """Signs reply tokens; the worker's reply endpoint checks them with the same secret."""
        self.breakers = breakers or Breakers()
        """The per-service breakers' client side."""

    @property
    def services(self) -> Mapping[str, str]:
        """Base URLs by service name."""
        return self._services

    @property
    def _client(self) -> httpx.AsyncClient:
        """The pooled client, created on first use (so a closed participant can be used again)."""
        if self._pool is None:
            self._pool = httpx.AsyncClient(
                timeout=httpx.Timeout(30.0, connect=5.0),
                limits=httpx.Limits(max_connections=200, max_keepalive_connections=50),
            )
        return self._pool

    async def aclose(self) -> None:
        """Close the pooled client if this participant created it."""
        if self._owns_client and self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.aclose()

    @activity.defn(name=HTTP_ACTIVITY)
    async def call(self, request: HttpRequest) -> HttpResponse:
        """Make one idempotent call to a participant service.

        Raises:
            ApplicationError: ``ParticipantUnavailable`` (retryable), ``ParticipantRejected``,
                ``MalformedResponse`` or ``UnknownService`` (non-retryable).
        """
        info = activity.info()
        what = f"{request.service} {request.method} {request.path}"
        base = self._services.get(request.service)
        if base is None:
            known = ", ".join(sorted(self._services)) or "none"
            raise ApplicationError(
                f"no URL configured for service {request.service!r} (known: {known}); "
                f"set SAGALOOM_SERVICE_{request.service.upper()}",
                type=UNKNOWN_SERVICE,
            )
        guarded = request.breaker and self.breakers.enabled
        if guarded and request.released:
            self.breakers.forget(request.service)  # it closed: read it afresh next time
        elif guarded:
            await self.breakers.check(request.service, what)
        key = idempotency_key()
        headers = {
            **self._headers,
            IDEMPOTENCY_HEADER: key,
            CORRELATION_HEADER: key,
            TOKEN_HEADER: self.replies.token(key),
        }
        token = self._tokens.get(request.service)
        secrets = [token.get_secret_value()] if token is not None else []
        if secrets:
            headers["Authorization"] = f"Bearer {secrets[0]}"
        if _propagate is not None:
            _propagate.inject(headers)  # traceparent of the current span, when tracing is on
        timeout = info.start_to_close_timeout.total_seconds() if info.start_to_close_timeout else 30
        send = self._client.request(
            request.method,
            base + request.path,
            json=request.body,
            headers=headers,
            timeout=httpx.Timeout(timeout, connect=min(5.0, timeout)),
        )
        try:
            response = await self._with_heartbeats(send)
        except httpx.HTTPError as err:
            failure = classify_transport_error(err, what, info.attempt, secrets)
            if guarded:
                await self.breakers.report(request.service, failure.message)
            raise failure from None
        unavailable = response.status_code in UNAVAILABLE_STATUSES
        if guarded and not unavailable:
            self.breakers.note(request.service, answered=True)
        if not response.is_success:
            failure = classify_response(response, what, info.attempt, secrets)
            if guarded and unavailable:
                await self.breakers.report(request.service, failure.message)
            raise failure
        try:
            body = response.json() if response.content else None
        except json.JSONDecodeError:
            raise ApplicationError(
                f"{what} -> HTTP {response.status_code} with a body that is not JSON",
                {"attempt": info.attempt},
                type=MALFORMED_RESPONSE,
                non_retryable=True,
            ) from None
        return HttpResponse(status=response.status_code, body=body, attempt=info.attempt)

    @activity.defn(name=PROBE_ACTIVITY)
    async def probe(self, service: str) -> str:
        """Whether ``service`` answers: "" when it does (any status but 502/503/504), else why.

        The breaker's one test of a service while it is open, instead of every waiting call.
        """
        base = self._services.get(service)
        if base is None:
            return f"no URL configured for service {service!r}"
        try:
            response = await self._client.get(base + "/", timeout=httpx.Timeout(5.0))
        except httpx.HTTPError as err:
            return f"{type(err).__name__}: {redact(str(err), 120)}"
        if response.status_code in UNAVAILABLE_STATUSES:
            return f"HTTP {response.status_code}"
        return ""

    async def _with_heartbeats(self, send: Coroutine[Any, Any, httpx.Response]) -> httpx.Response:
        """Await ``send``, heartbeating meanwhile; cancelling the activity cancels the call."""
        task = asyncio.ensure_future(send)
        try:
            while True:
                done, _ = await asyncio.wait({task}, timeout=self._heartbeat_every)
                if done:
                    return task.result()
                if not activity.info().is_local:  # local activities do not heartbeat
                    activity.heartbeat()
        finally:
            if not task.done():
                task.cancel()
