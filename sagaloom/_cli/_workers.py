"""``saga dev``, ``saga worker`` and ``saga set-current``: running sagas."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from sagaloom._cli._common import DATA_DIR, add_command, client, connection_flags
from sagaloom._cli._flags import worker_config, worker_flags
from sagaloom.client._deployments import set_current_build

__all__ = ["register"]


async def cmd_dev(args: argparse.Namespace) -> int:
    """The embedded dev server (and NATS, and a worker for the named sagas) until Ctrl-C."""
    from sagaloom.server._stack import run_dev

    return await run_dev(args.data_dir, worker_config(args), ui_port=args.ui_port)


async def cmd_worker(args: argparse.Namespace) -> int:
    """One worker process (``--processes N``: supervised, see ``__init__``)."""
    from sagaloom.worker._run import run_worker

    await run_worker(worker_config(args))
    return 0


async def cmd_set_current(args: argparse.Namespace) -> int:
    """Route new sagas to a build of a worker deployment."""
    temporal = await client(args)
    await set_current_build(temporal, args.deployment, args.build_id)
    print(
        f"{args.deployment} build {args.build_id} is current: new sagas start on it; "
        "pinned sagas finish on the build they started on (keep its workers until they do)"
    )
    return 0


def register(sub: Any) -> None:
    """Add this group's commands."""
    p = add_command(
        sub,
        "dev",
        cmd_dev,
        "run the embedded Temporal dev server (and a worker for --module sagas) until Ctrl-C",
        "saga dev --module myapp.sagas --service payment=http://127.0.0.1:8001",
    )
    connection_flags(p)
    worker_flags(p, dev=True)
    p.add_argument(
        "--ui-port", type=int, default=8233, metavar="PORT", help="the Web UI's port (8233)"
    )
    p.add_argument(
        "--data-dir",
        type=Path,
        default=DATA_DIR,
        metavar="DIR",
        help=f"where the server keeps its database and logs ({DATA_DIR})",
    )

    p = add_command(
        sub,
        "worker",
        cmd_worker,
        "run a worker process (SIGTERM/SIGINT stop it gracefully)",
        "saga worker --module myapp.sagas --task-queue orders --processes 2 "
        "--service payment=http://payment:8080",
    )
    connection_flags(p)
    worker_flags(p)

    p = add_command(
        sub,
        "set-current",
        cmd_set_current,
        "Worker Versioning: route new sagas to a build (pinned sagas stay on theirs)",
        "saga set-current --deployment shop --build-id 2026-11-30.1",
    )
    connection_flags(p)
    p.add_argument("--deployment", metavar="NAME", required=True, help="the worker deployment")
    p.add_argument("--build-id", metavar="ID", required=True, help="the build to make current")
