"""The activities behind exclusive keys: ask a key's shard (starting it), release, check holders.

They talk to Temporal through the worker's own client (``activity.client()``); the shards and
the saga's side are workflow code, in ``sagaloom/_runtime/_keylocks.py`` and ``_exclusive.py``.
"""

from __future__ import annotations

import asyncio

from temporalio import activity
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from sagaloom._runtime._keylocks import KeyRelease
from sagaloom._runtime._keyrules import KeyAnswer, KeyRequest
from sagaloom._wire._names import KEY_ASK_ACTIVITY, KEY_CLOSED_ACTIVITY, KEY_RELEASE_ACTIVITY
from sagaloom.client._keydesk import desk_of

__all__ = ["ask_key", "closed_holders", "release_keys"]


@activity.defn(name=KEY_ASK_ACTIVITY)
async def ask_key(request: KeyRequest) -> KeyAnswer:
    """Ask ``request.key``'s shard for the key, starting the shard if it is not running.

    Asking again is harmless: a saga already holding or waiting for the key keeps its place.
    The worker's asks go to each shard one Update at a time (``_keydesk``).
    """
    return await desk_of(activity.client()).ask(request)


@activity.defn(name=KEY_RELEASE_ACTIVITY)
async def release_keys(releases: list[KeyRelease]) -> None:
    """Tell each shard that the saga is done with its keys there (a shard gone: nothing held)."""
    await desk_of(activity.client()).tell(releases)


@activity.defn(name=KEY_CLOSED_ACTIVITY)
async def closed_holders(saga_ids: list[str]) -> list[str]:
    """Those of ``saga_ids`` whose current run closed (or that never existed)."""
    open_ = await asyncio.gather(*(_open(activity.client(), saga_id) for saga_id in saga_ids))
    return [saga_id for saga_id, is_open in zip(saga_ids, open_, strict=True) if not is_open]


async def _open(client: Client, saga_id: str) -> bool:
    try:
        described = await client.get_workflow_handle(saga_id).describe()
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            return False
        raise
    return described.status == WorkflowExecutionStatus.RUNNING
