"""``saga redrive``, ``compensate``, ``mark-done``, ``hold`` and ``release``: incidents.

A saga whose step failed and whose ``on_failure`` policy holds waits at the step (HELD): fix the
cause, then redrive it (one saga, or every saga a query finds, at a set rate), compensate it, or
mark the step done by hand. Before a fix is deployed, ``saga hold --step`` makes sagas that reach
a step wait without calling it; ``saga release`` lets them go at the release rate.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

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
from sagaloom._cli._services import order_breaker
from sagaloom._saga._model import SagaState
from sagaloom._saga._outage import PROBE_ACTIVITY, BreakerOrder
from sagaloom._wire._names import hold_service
from sagaloom.client._operations import (
    BulkSummary,
    act_on_held,
    compensate_held,
    mark_done,
    move_to_build,
    operator,
    redrive,
)
from sagaloom.client._views import step_table
from sagaloom.worker._registry import load_sagas

__all__ = ["register"]


def _object(text: str | None, flag: str) -> dict[str, Any] | None:
    if text is None:
        return None
    value = read_json(text, flag)
    if not isinstance(value, dict):
        raise CliError(f"{flag} must be a JSON object")
    return value


def _one_or_query(args: argparse.Namespace) -> None:
    if (args.id is None) == (args.query is None):
        raise CliError("name one saga (ID) or a --query, not both")
    if args.id is not None:
        workflow_id(args.id, "id")


def _bar(done: int, total: int) -> None:
    width = 30
    filled = int(width * done / total) if total else width
    print(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total}", end="", file=sys.stderr)


def _said(summary: BulkSummary, what: str) -> int:
    print(file=sys.stderr)
    for wid, why in sorted(summary.refused.items()):
        print(f"refused  {wid}: {why}")
    print(
        f"{what} {summary.acted} of {summary.matched} held saga(s) in {summary.seconds:.1f} s; "
        f"{summary.already} done by an earlier run of this checkpoint; "
        f"{len(summary.refused)} refused (query: {summary.query})"
    )
    return 1 if summary.refused else 0


async def cmd_redrive(args: argparse.Namespace) -> int:
    """Run a held saga's failed step again (or every held saga a query finds)."""
    _one_or_query(args)
    new_input = _object(args.input, "--input")
    patch = _object(args.request_patch, "--request-patch")
    temporal = await client(args)
    if (args.deployment is None) != (args.to_build is None):
        raise CliError("--to-build needs --deployment (and --deployment needs --to-build)")
    if args.query is not None:
        if new_input is not None or patch is not None or args.to_build is not None:
            raise CliError(
                "--input, --request-patch and --to-build go with one saga, not a --query"
            )
        return await _bulk(temporal, "redrive", args)
    if args.to_build is not None:  # run the fixed code: move the saga to that build first
        await move_to_build(temporal, args.id, args.deployment, args.to_build)
        print(f"{args.id} moved to build {args.to_build} of {args.deployment}")
    state = await redrive(
        temporal, args.id, input=new_input, request_patch=patch, step=args.step,
        note=args.note, by=args.by or operator(),
    )  # fmt: skip
    print(f"redrive of {args.id} taken: its step runs again" + _noted(args))
    print(step_table(state))
    return 0


async def cmd_compensate(args: argparse.Namespace) -> int:
    """Give up on a held saga (or every held saga a query finds): it compensates."""
    _one_or_query(args)
    temporal = await client(args)
    if args.query is not None:
        return await _bulk(temporal, "compensate", args)
    state = await compensate_held(
        temporal, args.id, step=args.step, note=args.note, by=args.by or operator()
    )
    print(f"{args.id} compensates its started steps" + _noted(args))
    print(step_table(state))
    return 0


async def cmd_mark_done(args: argparse.Namespace) -> int:
    """Record a held step as done by hand, with its output."""
    workflow_id(args.id, "id")
    output = read_json(args.output, "--output")
    temporal = await client(args)
    state: SagaState = await mark_done(
        temporal, args.id, args.step, output, note=args.note, by=args.by or operator()
    )
    print(f"{args.step} of {args.id} marked done" + _noted(args))
    print(step_table(state))
    return 0


async def _bulk(temporal: Any, action: str, args: argparse.Namespace) -> int:
    try:
        summary = await act_on_held(
            temporal,
            "redrive" if action == "redrive" else "compensate",
            args.query,
            per_second=args.rate,
            dry_run=args.dry_run,
            checkpoint=args.checkpoint,
            note=args.note,
            by=args.by or operator(),
            progress=None if args.json else _bar,
        )
    except ValueError as err:
        raise CliError(str(err)) from None
    if args.json:
        print(json.dumps(summary.as_json(), indent=2))
        return 1 if summary.refused else 0
    if args.dry_run:
        print(f"{summary.matched} held saga(s) match (dry run: nothing done; query: "
              f"{summary.query})")  # fmt: skip
        return 0
    return _said(summary, "redrove" if action == "redrive" else "compensated")


async def cmd_hold(args: argparse.Namespace) -> int:
    """Make sagas that reach a step wait there without calling it, until ``saga release``."""
    return await _hold_or_release(args, "open")


async def cmd_release(args: argparse.Namespace) -> int:
    """Let the sagas held before a step call it, at the release rate."""
    return await _hold_or_release(args, "close")


async def _hold_or_release(args: argparse.Namespace, action: str) -> int:
    sagas = [args.saga] if args.saga else []
    found = load_sagas(modules(args))
    if args.saga and found and args.saga not in found:
        raise CliError(f"no saga {args.saga!r} in the saga modules ({', '.join(sorted(found))})")
    if not sagas:  # every saga of the modules that has the step
        sagas = [n for n, wf in sorted(found.items()) if args.step in wf.saga.position]
        if not sagas:
            known = f"sagas {', '.join(sorted(found))}" if found else "no saga modules named"
            raise CliError(f"no saga has a step {args.step!r} ({known}: --module or --saga)")
    for name in sagas:
        if name in found and args.step not in found[name].saga.position:
            raise CliError(f"saga {name} has no step {args.step!r}")
    temporal = await client(args)
    order = BreakerOrder(action=action, note=args.note, release_per_second=args.rate)
    for name in sagas:
        view = await order_breaker(
            temporal, hold_service(name, args.step), order, args, probe=PROBE_ACTIVITY
        )
        waiting = len(view.waiting)
        if action == "open":
            print(f"{name}: sagas that reach {args.step} wait before it ({waiting} waiting); "
                  f"saga release --step {args.step} --saga {name} lets them go")  # fmt: skip
        else:
            print(f"{name}: released {args.step}: {waiting} waiting saga(s) go, at the "
                  "release rate")  # fmt: skip
    return 0


def _noted(args: argparse.Namespace) -> str:
    return f" ({args.note})" if args.note else ""


def _actor_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--note", default="", help="why: recorded with the decision (audit)")
    p.add_argument("--by", help="who: recorded with the decision (default: user@host)")
    p.add_argument("--step", help="the held step, to be sure it is the one (refused if not)")


def _bulk_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("id", nargs="?", help="the held saga's workflow id (or --query)")
    p.add_argument(
        "--query",
        help="every held saga this visibility query finds, e.g. \"SagaName = 'OrderSaga' AND "
        "SagaStep = 'charge-payment'\" (joined to SagaStatus = 'HELD')",
    )
    p.add_argument(
        "--rate", type=float, default=5.0, help="with --query: sagas a second at most (5)"
    )
    p.add_argument("--dry-run", action="store_true", help="with --query: count, do nothing")
    p.add_argument(
        "--checkpoint",
        type=Path,
        help="with --query: a file recording the run; run again with it to resume (no saga "
        "acted on twice)",
    )
    p.add_argument("--json", action="store_true", help="with --query: the summary as JSON")


def register(sub: Any) -> None:
    """Add this group's commands."""
    p = add_command(
        sub,
        "redrive",
        cmd_redrive,
        "run a held saga's failed step again, fresh attempts (or every held saga a query finds)",
        "saga redrive OrderSaga-o-1 --note 'PSP fixed'   (many: saga redrive --query "
        "\"SagaStep = 'charge-payment'\" --rate 5 --checkpoint redrive.log)",
    )
    connection_flags(p)
    _bulk_flags(p)
    p.add_argument(
        "--input",
        help="a corrected saga input, JSON (@file, -); the business key cannot change",
    )
    p.add_argument(
        "--request-patch",
        help="a JSON merge patch of the step's request, for this run (@file, -)",
    )
    p.add_argument(
        "--to-build",
        metavar="ID",
        help="first move the saga to this build of its worker deployment (the fixed code)",
    )
    p.add_argument("--deployment", metavar="NAME", help="the worker deployment of --to-build")
    _actor_flags(p)

    p = add_command(
        sub,
        "compensate",
        cmd_compensate,
        "give up on a held saga: it undoes its started steps (or every held saga a query finds)",
        "saga compensate OrderSaga-o-1 --note 'customer cancelled meanwhile'",
    )
    connection_flags(p)
    _bulk_flags(p)
    _actor_flags(p)

    for name, handler, helptext, example in (
        ("hold", cmd_hold, "make sagas that reach a step wait there, without calling it, until "
         "saga release (for the hour a fix takes)",
         "saga hold --step charge-payment --saga OrderSaga --note 'PSP bug, fix at 14:00'"),
        ("release", cmd_release, "let the sagas held before a step call it, at the release rate",
         "saga release --step charge-payment --saga OrderSaga"),
    ):  # fmt: skip
        p = add_command(sub, name, handler, helptext, example)
        connection_flags(p)
        p.add_argument("--step", required=True, help="the step")
        p.add_argument("--saga", help="the saga (default: every saga of the modules with it)")
        p.add_argument("--note", default="", help="why: recorded with the hold")
        p.add_argument(
            "--rate",
            type=float,
            help="sagas let go a second once released (default: the workers' "
            "SAGALOOM_BREAKER_RELEASE_PER_SECOND)",
        )
        task_queue_flag(p, "the workers' task queue (SAGALOOM_TASK_QUEUE)")
        module_flag(p)

    p = add_command(
        sub,
        "mark-done",
        cmd_mark_done,
        "record a held step as done by hand (fixed outside the system), with its output",
        'saga mark-done OrderSaga-o-1 --step charge-payment --output \'{"id": "ch-1", '
        '"order_id": "o-1"}\' --note \'charged in the PSP console\'',
    )
    connection_flags(p)
    p.add_argument("id", help="the held saga's workflow id")
    p.add_argument("--output", required=True, help="the step's output, JSON (@file, -)")
    _actor_flags(p)
    for action in p._actions:
        if action.dest == "step":
            action.required, action.help = True, "the held step"
