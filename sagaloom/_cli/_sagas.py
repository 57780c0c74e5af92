"""``saga start``, ``show``/``status``, ``list``, ``cancel``, ``resolve``, ``reply``."""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from typing import Any

from temporalio.client import Client, WorkflowExecutionStatus

from sagaloom._cli._common import (
    CliError,
    add_command,
    client,
    connection_flags,
    module_flag,
    modules,
    read_json,
    task_queue_flag,
    workflow_id,
)
from sagaloom._cli._graphs import graph_flags, painted, write_drawing
from sagaloom._saga._definition import Saga
from sagaloom._saga._model import Reply, Resolution, SagaState, reply_problem
from sagaloom._wire._names import REPLY_UPDATE, step_key
from sagaloom.client._runs import outcome, start_saga, ui_link
from sagaloom.client._views import item_rows, list_query, list_sagas, read_saga, step_table
from sagaloom.worker._registry import find_saga, load_sagas

__all__ = ["register"]


async def cmd_start(args: argparse.Namespace) -> int:
    """Validate the input (before connecting), start the saga, maybe wait."""
    saga = find_saga(args.saga, load_sagas(modules(args)))
    if args.id is not None:
        workflow_id(args.id)
    data = read_json(args.input, "--input")
    try:
        saga.parse_input(data)  # rejects bad input before connecting
    except RecursionError:
        raise CliError("--input is nested too deeply") from None
    if args.wait_for is not None and args.wait_for not in saga.position:
        steps = ", ".join(s.name for s in saga.steps)
        raise CliError(f"--wait-for {args.wait_for!r}: {saga.name} has no such step ({steps})")
    temporal = await client(args)
    if args.wait_for is not None:
        return await _start_and_wait_for(temporal, saga, data, args)
    handle = await start_saga(temporal, saga, data, id=args.id, task_queue=args.task_queue)
    print(f"started {handle.id}  {ui_link(handle.id, namespace=args.namespace, ui=args.ui)}")
    if args.wait:
        result = await outcome(handle)
        print(f"{result.status.value} {result.error or ''}".rstrip())
        return 0 if result.status.value == "COMPLETED" else 1
    return 0


async def _start_and_wait_for(
    temporal: Client, saga: Saga[Any], data: Any, args: argparse.Namespace
) -> int:
    """``saga start --wait-for STEP``: the step's output as JSON, or how the saga failed first."""
    answer = await start_saga(
        temporal, saga, data, id=args.id, task_queue=args.task_queue, wait_for=args.wait_for
    )
    wid = answer.handle.id
    print(f"saga {wid}  {ui_link(wid, namespace=args.namespace, ui=args.ui)}", file=sys.stderr)
    if answer.ended is None:
        print(json.dumps({"step": answer.step, "output": answer.output}))
        return 0
    ended = answer.ended
    print(json.dumps({"step": answer.step, "status": ended.status.value, "error": ended.error}))
    return 1


async def cmd_show(args: argparse.Namespace) -> int:
    """A saga's step table, live from its worker or read from its history."""
    workflow_id(args.id, "id")
    temporal = await client(args)
    state, description, source = await read_saga(temporal, args.id)
    if args.graph:
        write_drawing(painted(args.id, state, description.workflow_type, args), args.output)
        return 0
    try:
        items = await item_rows(temporal, args.id, state) if args.items else None
    except ValueError as err:
        raise CliError(str(err)) from None
    if args.json:
        body = {"workflow_id": args.id, "source": source, **state.model_dump(mode="json")}
        if items is not None:
            body["item_rows"] = [row.as_json() for row in items]
        print(json.dumps(body, indent=2))
        return 0
    print(step_table(state, description))
    if items is not None:
        print(f"\n{'step':<18} {'#':>6}  {'item':<24} {'status':<12} {'undo':<12} error")
        for row in items:
            print(
                f"{row.step:<18} {row.index + 1:>6}  {row.key:<24} {row.status:<12} "
                f"{row.undo:<12} {row.error or ''}"
            )
        for step in dict.fromkeys(row.step for row in items):
            ended = Counter(row.status for row in items if row.step == step)
            told = ", ".join(f"{n} {how.replace('_', ' ')}" for how, n in sorted(ended.items()))
            print(f"{step}: {sum(ended.values())} items: {told}")
    status = description.status.name.lower() if description.status else "unknown"
    print(f"\nworkflow {status}; {ui_link(args.id, namespace=args.namespace, ui=args.ui)}")
    if source == "history":
        print(
            "(from the history: no worker answered the live query, or the saga ended without a "
            "report; steps that never started are not listed)"
        )
    return 0


async def cmd_resolve(args: argparse.Namespace) -> int:
    """An operator's decision for a saga parked on a failed compensation."""
    workflow_id(args.id, "id")
    if args.retry:
        resolution = Resolution(action="retry", note=args.note)
    elif args.skip:
        resolution = Resolution(action="skip", step=args.skip, note=args.note)
    else:
        resolution = Resolution(
            action="mark_compensated", step=args.mark_compensated, note=args.note
        )
    handle = (await client(args)).get_workflow_handle(args.id)
    state = await handle.execute_update("resolve", resolution, result_type=SagaState)
    print(f"{resolution.action} recorded for {args.id}" + (f": {args.note}" if args.note else ""))
    print(step_table(state))
    return 0


async def cmd_reply(args: argparse.Namespace) -> int:
    """An asynchronous participant's reply, delivered by hand."""
    workflow_id(args.id, "id")
    data = read_json(args.data, "--data")
    if not isinstance(data, dict):
        raise CliError('--data must be a JSON object, for example \'{"id": "htl-1"}\'')
    reply = Reply(
        correlation_id=step_key(args.id, args.step),
        ok=args.reject is None,
        data=data,
        reason=args.reject or "",
    )
    problem = reply_problem(reply)
    if problem is not None:
        raise CliError(problem)
    await (await client(args)).get_workflow_handle(args.id).execute_update(REPLY_UPDATE, reply)
    print(f"reply sent to {args.id} step {args.step}: {'ok' if reply.ok else 'rejected'}")
    return 0


async def cmd_list(args: argparse.Namespace) -> int:
    """Sagas from Temporal visibility, newest first."""
    try:
        query = list_query(args.status, args.saga)
    except ValueError as err:
        raise CliError(str(err)) from None
    rows = await list_sagas(await client(args), query, args.limit)
    if args.json:
        print(json.dumps([row.as_json() for row in rows], indent=2))
        return 0
    print(f"{'status':<16} {'saga':<12} {'key':<24} {'step':<18} workflow")
    for row in rows:
        print(
            f"{row.status:<16} {row.saga:<12} {row.key or '-':<24} {row.step or '-':<18} "
            f"{ui_link(row.workflow_id, namespace=args.namespace, ui=args.ui)}"
        )
    print(f"({len(rows)} saga(s); query: {query})", file=sys.stderr)
    return 0


async def cmd_cancel(args: argparse.Namespace) -> int:
    """Cancel a running saga: its started steps are compensated."""
    workflow_id(args.id, "id")
    handle = (await client(args)).get_workflow_handle(args.id)
    description = await handle.describe()
    if description.status is not WorkflowExecutionStatus.RUNNING:
        raise CliError(f"saga {args.id!r} is not running ({description.status})")
    await handle.cancel()
    print(f"cancel requested for {args.id}: its started steps will be compensated")
    return 0


def register(sub: Any) -> None:
    """Add this group's commands."""
    p = add_command(
        sub,
        "start",
        cmd_start,
        "validate the input and start a saga",
        'saga start OrderSaga --module myapp.sagas --input \'{"order_id": "o-1", '
        '"amount": 12.5}\' --wait',
    )
    connection_flags(p)
    p.add_argument("saga")
    p.add_argument(
        "--input", required=True, help="the saga input as JSON, @file.json, or - (stdin)"
    )
    p.add_argument("--id", help="workflow id (default: <saga>-<business key>)")
    task_queue_flag(p, "the workers' task queue (SAGALOOM_TASK_QUEUE)")
    module_flag(p)
    p.add_argument("--wait", action="store_true", help="wait for the outcome")
    p.add_argument(
        "--wait-for",
        metavar="STEP",
        help="answer early: print STEP's output once it is done (or the saga's failure if "
        "first); a saga already running for the same key is attached to, not started again",
    )

    for name, helptext, example in (
        ("show", "a saga's live step table: status, attempts, timings, compensations",
         "saga show OrderSaga-o-1 --json"),
        ("status", "same as show", "saga status OrderSaga-o-1"),
        ("cancel", "cancel a saga: its started steps are compensated",
         "saga cancel OrderSaga-o-1"),
    ):  # fmt: skip
        p = add_command(sub, name, cmd_cancel if name == "cancel" else cmd_show, helptext, example)
        connection_flags(p)
        p.add_argument("id")
        if name != "cancel":
            p.add_argument("--json", action="store_true", help="the state as JSON")
            p.add_argument(
                "--items",
                action="store_true",
                help="list every item of the saga's fan-out (ForEach) steps: how each ended "
                "and whether it was undone",
            )
            p.add_argument(
                "--graph",
                action="store_true",
                help="draw the run on its saga's graph: what ran, failed, was undone, waits, "
                "never ran (needs the saga's --module)",
            )
            module_flag(p)
            graph_flags(p)

    p = add_command(
        sub,
        "resolve",
        cmd_resolve,
        "decide for a saga parked on a failed compensation",
        "saga resolve OrderSaga-o-1 --mark-compensated reserve-stock --note 'undone by hand'",
    )
    connection_flags(p)
    p.add_argument("id")
    action = p.add_mutually_exclusive_group(required=True)
    action.add_argument("--retry", action="store_true", help="run the compensation again")
    action.add_argument("--skip", metavar="STEP", help="leave it undone (say why in --note)")
    action.add_argument("--mark-compensated", metavar="STEP", help="it was undone by hand")
    p.add_argument("--note", default="", help="recorded with the decision")

    p = add_command(
        sub,
        "reply",
        cmd_reply,
        "deliver an asynchronous participant's reply to a step",
        'saga reply TripSaga-t-1 --step book-hotel --data \'{"id": "htl-1"}\'',
    )
    connection_flags(p)
    p.add_argument("id")
    p.add_argument("--step", required=True, help="the step whose reply this is")
    p.add_argument(
        "--data", default="{}", help="JSON object reported by the participant (@file, -)"
    )
    p.add_argument("--reject", metavar="REASON", help="a negative reply")

    p = add_command(
        sub,
        "list",
        cmd_list,
        "list sagas from Temporal visibility",
        "saga list --status needs_attention --saga OrderSaga",
    )
    connection_flags(p)
    p.add_argument("--status", help="running, completed, compensated, needs_attention, …")
    p.add_argument("--saga", help="saga name, for example OrderSaga")
    p.add_argument("--limit", type=int, default=50, help="at most this many, newest first (50)")
    p.add_argument("--json", action="store_true", help="one JSON list")
