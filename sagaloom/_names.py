"""Names that recorded histories and the Temporal namespace hold: keep them byte for byte.

Workflow histories record activity names, signal, query and update names and memo keys;
visibility holds the search attributes. Changing any of them breaks running sagas' replay or
the Web UI's filters, so they live here, apart from the code that uses them.
"""

from __future__ import annotations

from temporalio.common import SearchAttributeKey

__all__ = [
    "CHILD_DONE_SIGNAL",
    "HELD_MEMO",
    "HTTP_ACTIVITY",
    "PARENT_SIGNAL",
    "REPLY_SIGNAL",
    "RESOLVE_UPDATE",
    "SAGA_KEY",
    "SAGA_NAME",
    "SAGA_STATUS",
    "SAGA_STEP",
    "SEARCH_ATTRIBUTES",
    "STATE_QUERY",
    "compensation_activity_id",
]

HTTP_ACTIVITY = "sagaloom.http"
"""Registered name of the engine's HTTP participant activity."""
HELD_MEMO = "sagaloom.held"
"""Memo set on a child saga started by a parent saga: it stays open for the parent's decision."""
PARENT_SIGNAL = "parent"
"""Signal a parent saga sends its held child: ``release`` or ``compensate``."""
CHILD_DONE_SIGNAL = "child_done"
"""Signal a child saga sends its parent when its steps are done."""
REPLY_SIGNAL = "reply"
"""Signal carrying an asynchronous participant's reply."""
RESOLVE_UPDATE = "resolve"
"""Update carrying an operator's decision for a parked saga."""
STATE_QUERY = "saga_state"
"""Query returning a saga's live state."""

SAGA_NAME = SearchAttributeKey.for_keyword("SagaName")
"""Search attribute: the saga's name."""
SAGA_STATUS = SearchAttributeKey.for_keyword("SagaStatus")
"""Search attribute: the saga's status."""
SAGA_STEP = SearchAttributeKey.for_keyword("SagaStep")
"""Search attribute: the step running or compensating now (the failed step once compensated)."""
SAGA_KEY = SearchAttributeKey.for_keyword("SagaKey")
"""Search attribute: the business key (for example the order id)."""
SEARCH_ATTRIBUTES: tuple[SearchAttributeKey[str], ...] = (
    SAGA_NAME,
    SAGA_STATUS,
    SAGA_STEP,
    SAGA_KEY,
)
"""Custom search attributes the runtime writes; register them on the namespace (Keyword)."""


def compensation_activity_id(step: str) -> str:
    """Activity id of a step's compensation (the forward action's activity id is the step name)."""
    return f"{step}:compensate"
