"""``saga locks``: the exclusive keys held now, by which saga, and who waits for each."""

from __future__ import annotations

import argparse
import asyncio
import json
from datetime import timedelta
from typing import Any

from temporalio.client import WorkflowQueryFailedError
from temporalio.service import RPCError

from sagaloom._cli._common import add_command, client, connection_flags
from sagaloom._runtime._keylocks import KeyShardState
from sagaloom._runtime._keyrules import KeyLockState
from sagaloom._wire._names import KEY_SHARD_PREFIX, KEY_SHARD_WORKFLOW, KEY_STATE_QUERY

__all__ = ["register"]

_QUERY_TIMEOUT = timedelta(seconds=5)


async def cmd_locks(args: argparse.Namespace) -> int:
    """List every exclusive key held or waited for: its holder, since when, and its queue."""
    temporal = await client(args)
    query = f'WorkflowType = "{KEY_SHARD_WORKFLOW}" AND ExecutionStatus = "Running"'
    found = [(e.id, e.task_queue) async for e in temporal.list_workflows(query)]
    answers = [row for rows in await asyncio.gather(*(_rows(temporal, wid, queue)
               for wid, queue in found)) for row in rows]  # fmt: skip
    if args.key:
        answers = [row for row in answers if args.key in row["key"]]
    if args.json:
        print(json.dumps(answers, indent=2))
        return 0
    print(f"{'key':<36} {'holder':<40} {'since':<9} {'waiting':>7}  queue (first) / task queue")
    for row in sorted(answers, key=lambda a: a["key"]):
        waiting = row.get("waiting", [])
        first = waiting[0] if waiting else "-"
        print(f"{row['key']:<36} {row.get('holder') or '-':<40} {row.get('since') or '-':<9} "
              f"{len(waiting) if 'waiting' in row else '?':>7}  {first} / {row['task_queue']}"
              f"{'  ' + row['error'] if 'error' in row else ''}")  # fmt: skip
    if not answers:
        print("(no exclusive key is held or waited for)")
    return 0


async def _rows(temporal: Any, workflow_id: str, task_queue: str) -> list[dict[str, Any]]:
    """One row per key the shard holds or queues."""
    try:
        handle = temporal.get_workflow_handle(workflow_id)
        state = await handle.query(
            KEY_STATE_QUERY, result_type=KeyShardState, rpc_timeout=_QUERY_TIMEOUT
        )
    except (WorkflowQueryFailedError, RPCError) as err:
        key = f"(shard {workflow_id.removeprefix(KEY_SHARD_PREFIX)})"
        error = f"no answer (no worker polls {task_queue}?): {err}"[:160]
        return [{"key": key, "task_queue": task_queue, "error": error}]
    return [_row(lock, task_queue) for lock in state.keys.values() if not lock.idle()]


def _row(lock: KeyLockState, task_queue: str) -> dict[str, Any]:
    return {
        "key": lock.key,
        "task_queue": task_queue,
        "holder": lock.holder,
        "since": f"{lock.since:%H:%M:%S}" if lock.since else None,
        "sharing": lock.guests,
        "waiting": [r.saga_id for r in lock.queue],
    }


def register(sub: Any) -> None:
    """Add this group's commands."""
    p = add_command(
        sub,
        "locks",
        cmd_locks,
        "exclusive keys held now, their holders and the sagas waiting for them",
        "saga locks   (or: saga locks --key account:42 --json)",
    )
    connection_flags(p)
    p.add_argument("--key", help="only keys containing this text")
    p.add_argument("--json", action="store_true", help="as JSON")
