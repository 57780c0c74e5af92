"""The activities behind exclusive keys: ask a key's lock (starting it), check a holder's run.

They talk to Temporal through the worker's own client (``activity.client()``); the lock and
the saga's side are workflow code, in ``sagaloom/_runtime/_exclusive.py``.
"""

from __future__ import annotations

from temporalio import activity
from temporalio.client import WithStartWorkflowOperation, WorkflowExecutionStatus
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.service import RPCError, RPCStatusCode

from sagaloom._names import (
    KEY_ACQUIRE_UPDATE,
    KEY_HOLDER_ACTIVITY,
    KEY_LOCK_WORKFLOW,
    KEY_REQUEST_ACTIVITY,
)
from sagaloom._runtime._exclusive import KeyAnswer, KeyLockState, KeyRequest, lock_id

__all__ = ["holder_open", "request_key"]


@activity.defn(name=KEY_REQUEST_ACTIVITY)
async def request_key(request: KeyRequest) -> KeyAnswer:
    """Ask ``request.key``'s lock for the key, starting the lock if it is not running.

    The lock runs on this worker's task queue. Asking again is harmless: a saga already holding
    or waiting for the key keeps its place.
    """
    start: WithStartWorkflowOperation[object, None] = WithStartWorkflowOperation(
        KEY_LOCK_WORKFLOW,
        KeyLockState(key=request.key),
        id=lock_id(request.key),
        task_queue=activity.info().task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        static_summary=f"exclusive key {request.key}",
    )
    answer: KeyAnswer = await activity.client().execute_update_with_start_workflow(
        KEY_ACQUIRE_UPDATE, request, start_workflow_operation=start, result_type=KeyAnswer
    )
    return answer


@activity.defn(name=KEY_HOLDER_ACTIVITY)
async def holder_open(saga_id: str) -> bool:
    """Whether saga ``saga_id``'s current run is still open (False: closed or never existed)."""
    try:
        described = await activity.client().get_workflow_handle(saga_id).describe()
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            return False
        raise
    return described.status == WorkflowExecutionStatus.RUNNING
