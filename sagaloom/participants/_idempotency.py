"""Idempotency keys for participant calls.

A key is derived from the workflow id and the activity id. The runtime sets the activity id of a
step's forward action to the step name and that of its compensation to ``<step>:compensate``, so
the key is stable across retries, worker restarts and workflow resets, and differs between a step
and its compensation. (Reusing a workflow id reuses its keys: start one saga per business key.)
"""

from __future__ import annotations

from temporalio import activity

from sagaloom._wire._names import step_key
from sagaloom._wire._protocol import IDEMPOTENCY_HEADER

__all__ = ["IDEMPOTENCY_HEADER", "idempotency_key"]


def idempotency_key(workflow_id: str | None = None, activity_id: str | None = None) -> str:
    """Return the idempotency key of the current activity (or of the ids given).

    Args:
        workflow_id: Defaults to the running activity's workflow id.
        activity_id: Defaults to the running activity's id.

    Returns:
        ``"<workflow_id>:<activity_id>"``.
    """
    if workflow_id is None or activity_id is None:
        info = activity.info()
        workflow_id = workflow_id or info.workflow_id or ""
        activity_id = activity_id or info.activity_id
    return step_key(workflow_id, activity_id)  # the activity id is the step (or its undo)
