"""A deliberately broken engine for the chaos harness's self-test (never loaded otherwise).

Registered as a saga module, it patches the HTTP participant in the worker process so that a
retried call sends a fresh ``Idempotency-Key`` — the bug the harness's key invariant exists to
catch: a participant that deduplicates by key would apply the effect again.
"""

from __future__ import annotations

from temporalio import activity

from sagaloom.participants import _http

_real = _http.idempotency_key


def _fresh_key_per_attempt(workflow_id: str | None = None, activity_id: str | None = None) -> str:
    key = _real(workflow_id, activity_id)
    attempt = activity.info().attempt
    return key if attempt == 1 else f"{key}:retry-{attempt}"


_http.idempotency_key = _fresh_key_per_attempt  # type: ignore[assignment]
