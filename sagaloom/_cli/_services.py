"""``saga services``: each service's breaker, the steps waiting on it; open or close one by hand."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from datetime import timedelta
from typing import Any

from temporalio.client import WorkflowQueryFailedError
from temporalio.service import RPCError

from sagaloom._cli._common import (
    CliError,
    add_command,
    client,
    connection_flags,
    module_flag,
    modules,
    task_queue_flag,
)
from sagaloom._config._settings import SERVICE_PREFIX, setting
from sagaloom._saga._definition import Command
from sagaloom._saga._outage import (
    BREAKER_WORKFLOW,
    COMMAND_PROBE_ACTIVITY,
    PROBE_ACTIVITY,
    SET_UPDATE,
    VIEW_QUERY,
    BreakerOrder,
    BreakerStart,
    BreakerView,
    breaker_id,
)
from sagaloom.worker._config import WorkerConfig
from sagaloom.worker._registry import load_sagas

__all__ = ["order_breaker", "register"]

_QUERY_TIMEOUT = timedelta(seconds=5)
"""How long ``saga services`` waits for one breaker's answer."""


def _row(view: BreakerView) -> str:
    status = view.status.value + (f" (forced {view.forced})" if view.forced else "")
    since = f"since {view.opened_at:%H:%M:%S}" if view.opened_at and view.status == "open" else ""
    if view.expired:
        since += " budget spent"
    return (
        f"{view.service:<16} {status:<22} {len(view.waiting):>7} {view.released:>8} "
        f"{view.probes:>6}  {since:<24} {view.last_error[:60]}"
    )


async def cmd_services(args: argparse.Namespace) -> int:
    """List the breakers, or give one an operator's order."""
    temporal = await client(args)
    actions = [a for a in ("open", "close", "auto") if getattr(args, a)]
    order = BreakerOrder(action=actions[0], note=args.note) if actions else None
    if order is not None:
        name = getattr(args, order.action).lower()
        view = await order_breaker(temporal, name, order, args)
        print(f"breaker of {name}: {view.status.value} (forced {view.forced or 'no: automatic'})"
              f"; {len(view.waiting)} step(s) waiting")  # fmt: skip
        return 0
    query = f'WorkflowType = "{BREAKER_WORKFLOW}" AND ExecutionStatus = "Running"'
    found = [(e.id, e.task_queue) async for e in temporal.list_workflows(query)]
    answers = await asyncio.gather(*(_view(temporal, wid, queue) for wid, queue in found))
    views = sorted((a for a in answers if isinstance(a, BreakerView)), key=lambda v: v.service)
    silent = sorted((a for a in answers if isinstance(a, dict)), key=lambda a: a["service"])
    if args.json:
        print(json.dumps([*(v.model_dump(mode="json") for v in views), *silent], indent=2))
        return 0
    print(f"{'service':<16} {'breaker':<22} {'waiting':>7} {'released':>8} {'probes':>6}  "
          f"{'open':<24} last error")  # fmt: skip
    for view in views:
        print(_row(view))
    for answer in silent:
        print(f"{answer['service']:<16} {'unknown':<22} {'?':>7}  {answer['error']}")
    seen = {v.service for v in views} | {a["service"] for a in silent}
    quiet = sorted(set(_configured(args)) - seen)
    for name in quiet:
        print(f"{name:<16} {'closed (no outage seen)':<22} {0:>7}")
    return 0


async def _view(temporal: Any, workflow_id: str, task_queue: str) -> BreakerView | dict[str, str]:
    """A breaker's view, or why it gave none (no worker polls its task queue, say)."""
    handle = temporal.get_workflow_handle(workflow_id)
    try:
        view: BreakerView = await handle.query(
            VIEW_QUERY, result_type=BreakerView, rpc_timeout=_QUERY_TIMEOUT
        )
        return view
    except (RPCError, WorkflowQueryFailedError) as err:
        reason = f"no answer in {_QUERY_TIMEOUT.seconds} s: is a worker polling {task_queue}?"
        if isinstance(err, WorkflowQueryFailedError):
            reason = f"its query failed: {err}"
        service = workflow_id.removeprefix(breaker_id("")).removeprefix(f"{task_queue}:")
        return {"service": service, "status": "unknown", "error": reason}


async def _breakers_of(temporal: Any, service: str) -> dict[str, str]:
    """The running breakers of ``service``: their workflow ids by task queue."""
    query = f'WorkflowType = "{BREAKER_WORKFLOW}" AND ExecutionStatus = "Running"'
    found = {}
    async for execution in temporal.list_workflows(query):
        if execution.id.rsplit(":", 1)[-1] == service:
            found[execution.task_queue] = execution.id
    return found


def _configured(args: argparse.Namespace) -> dict[str, str]:
    """The services known here, each with its breaker's probe.

    The HTTP services this shell's worker configuration names (``SAGALOOM_SERVICE_<NAME>``)
    and the ``Command`` services of the saga modules (``--module``, ``SAGALOOM_SAGA_MODULES``).
    """
    known = dict.fromkeys(setting("services").read(os.environ), PROBE_ACTIVITY)
    for workflow in load_sagas(modules(args)).values():
        for step in workflow.saga.steps:
            if isinstance(step.action, Command):
                known.setdefault(step.action.service_name, COMMAND_PROBE_ACTIVITY)
    return dict(sorted(known.items()))


async def order_breaker(
    temporal: Any,
    name: str,
    order: BreakerOrder,
    args: argparse.Namespace,
    *,
    probe: str | None = None,
) -> BreakerView:
    """Give ``name``'s breaker an operator's order, starting it where it does not run yet.

    Args:
        temporal: A client.
        name: The service (or ``hold.<saga>.<step>``, an operator's hold before a step).
        order: Open, close or auto.
        args: The command's (``--task-queue``).
        probe: The breaker's probe; None: the service must be a known one (its probe then).

    Raises:
        CliError: an unknown service, or breakers off here.
    """
    running = await _breakers_of(temporal, name)
    chosen = running.get(args.task_queue) or (
        next(iter(running.values())) if len(running) == 1 else None
    )
    if chosen is None and running:
        queues = ", ".join(sorted(running))
        raise CliError(f"service {name!r} has a breaker per app here: name its --task-queue "
                       f"({queues})")  # fmt: skip
    if chosen is not None:
        handle = temporal.get_workflow_handle(chosen)
        view: BreakerView = await handle.execute_update(SET_UPDATE, order, result_type=BreakerView)
        return view
    known = _configured(args) if probe is None else {name: probe}
    if name not in known:
        raise CliError(
            f"unknown service {name!r}: it has no breaker yet, {SERVICE_PREFIX}{name.upper()} "
            "is not set here and no Command step of the saga modules sends to it (known: "
            f"{', '.join(known) or 'none'})"
        )
    config = WorkerConfig.from_env()
    settings = config.breakers().settings_for(name) if config.breaker else None
    if settings is None:
        raise CliError("breakers are off here (SAGALOOM_BREAKER=off)")
    started = await temporal.start_workflow(
        BREAKER_WORKFLOW,
        BreakerStart(service=name, settings=settings, probe=known[name]),
        id=breaker_id(name, args.task_queue),
        task_queue=args.task_queue,
    )
    view = await started.execute_update(SET_UPDATE, order, result_type=BreakerView)
    return view


def register(sub: Any) -> None:
    """Add this group's commands."""
    p = add_command(
        sub,
        "services",
        cmd_services,
        "each service's breaker and the steps waiting on it; open or close one by hand",
        "saga services   (then: saga services --open payment --note 'PSP maintenance')",
    )
    connection_flags(p)
    order = p.add_mutually_exclusive_group()
    order.add_argument("--open", metavar="SERVICE", help="hold its steps (they wait) until closed")
    order.add_argument("--close", metavar="SERVICE", help="let its steps call again, at the rate")
    order.add_argument("--auto", metavar="SERVICE", help="back to automatic (failures and probes)")
    p.add_argument("--note", default="", help="recorded with the order")
    task_queue_flag(p, "where a breaker started here runs (the workers' task queue)")
    p.add_argument("--json", action="store_true", help="as JSON")
    module_flag(p)
