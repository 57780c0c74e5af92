"""What a step that fails for good does: compensate, or hold for an operator. Pure decisions.

A step's failure is of one kind (:data:`FailureKind`), read from the error by the runtime. The
saga's (or the step's) ``on_failure`` policy says which kinds hold the saga at the failed step
instead of compensating it; :func:`holds` decides, apart from Temporal and I/O, so it is tested
as a table. :func:`new_key_on_redrive` says when a redriven step gets a new idempotency key, and
:func:`merge_patch` applies an operator's request patch (RFC 7396).
"""

from __future__ import annotations

from typing import Any, Literal

__all__ = [
    "HOLD_KINDS",
    "ON_FAILURE",
    "FailureKind",
    "OnFailure",
    "holds",
    "merge_patch",
    "new_key_on_redrive",
]

OnFailure = Literal["compensate", "hold", "hold-all"]
"""A step's policy when it fails for good.

* ``compensate``: undo the started steps (the saga ends COMPENSATED);
* ``hold``: an unexpected failure holds the saga at the step for an operator (fix, then
  redrive, compensate or mark it done); a business refusal still compensates;
* ``hold-all``: every failure holds, refusals too (a participant that answers a wrong 4xx).
"""
ON_FAILURE: tuple[OnFailure, ...] = ("compensate", "hold", "hold-all")

FailureKind = Literal[
    "refused", "unavailable", "timeout", "unknown", "bug", "child", "deadline", "cancelled"
]
"""How a step failed for good.

* ``refused``: the participant said no (a 4xx but 408/425/429, a negative reply, an error type
  the step lists as non-retryable): nothing took effect;
* ``unavailable``: its retries were spent on an unavailable participant (5xx, refused or reset
  connections, 408/425/429), or its outage budget;
* ``timeout``: its time budget was spent (``start_to_close``/``schedule_to_close``), or no
  reply came in time;
* ``unknown``: an answer the engine cannot read as done or refused (a 3xx, a 2xx that is not
  JSON or does not fit ``output=``), or fan-out items that failed;
* ``bug``: an exception of an activity or of a step's builder (not a classified failure);
* ``child``: a child saga failed (it compensated itself);
* ``deadline``: the saga's deadline passed;
* ``cancelled``: the saga was cancelled.
"""

HOLD_KINDS: dict[OnFailure, frozenset[FailureKind]] = {
    "compensate": frozenset(),
    "hold": frozenset({"unavailable", "timeout", "unknown", "bug"}),
    "hold-all": frozenset({"refused", "unavailable", "timeout", "unknown", "bug"}),
}
"""The kinds each policy holds. Never held: a child saga's failure (it undid itself already,
the parent compensates as a unit), a deadline (the business gave the saga that long) and a
cancellation (an order to stop)."""


def holds(policy: OnFailure, kind: FailureKind) -> bool:
    """Whether a step with ``policy`` that failed with ``kind`` holds instead of compensating."""
    return kind in HOLD_KINDS[policy]


def new_key_on_redrive(kind: FailureKind, *, changed: bool) -> bool:
    """Whether a redriven step gets a new idempotency key (``<step>~r<n>``).

    A step refused under its key is refused again under it: a participant that keeps its
    answers by key (the toolkit does) answers the stored refusal. Nothing took effect under a
    refused key, so the redrive gets a new one. Any other failure may have taken effect (a
    timeout, an unknown outcome, retries spent on 5xx): the redrive reuses the key, so the
    participant applies the effect at most once — with a changed request too (``changed``):
    an effect that already happened is answered from the key, never applied twice.
    """
    del changed  # the request changing never makes a new key: only a refusal does
    return kind == "refused"


def merge_patch(target: Any, patch: Any) -> Any:
    """``target`` with ``patch`` applied as a JSON merge patch (RFC 7396).

    An object patch merges into an object (a ``None`` value removes the key); any other patch
    replaces the target.
    """
    if not isinstance(patch, dict):
        return patch
    merged = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = merge_patch(merged.get(key), value)
    return merged
