"""Whether a saga's large payloads go to a store, which lifts the limits history would set."""

from __future__ import annotations

from temporalio import workflow

from sagaloom._wire._names import PAYLOADS_MEMO

__all__ = ["payloads_stored"]


def payloads_stored() -> bool:
    """Whether this run's large payloads go to a store: the client that started it had one.

    Read from the run's memo (:data:`~sagaloom._wire._names.PAYLOADS_MEMO`), which a replay
    reads the same; a saga started without it keeps history's limits (a fan-out's outputs at
    most 1 MB).
    """
    return bool(workflow.memo_value(PAYLOADS_MEMO, False, type_hint=bool))
