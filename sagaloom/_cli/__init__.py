"""The ``saga`` command line, one module per command group.

``_workers`` (dev, worker, set-current), ``_sagas`` (start, show/status, list, cancel, resolve,
reply), ``_graphs`` (graph, and show's drawing), ``_services`` (services: the breakers),
``_locks`` (locks: exclusive keys), ``_broker`` (dead-letters, events), ``_tools``
(codec-server, new-key, contract), ``_upgrade`` (upgrade-check: the release line); what they
share is in ``_common``, the worker flags come from the settings table (``_flags``), and one
mapper (``_explain``) turns every expected failure into one line and exit code 2.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from sagaloom._cli import (
    _broker,
    _graphs,
    _incidents,
    _locks,
    _sagas,
    _services,
    _tools,
    _upgrade,
    _workers,
)
from sagaloom._cli._common import (
    CLI_ENV,
    UI_FILE,
    CliError,
    apply_tls_flags,
    default_ui,
    fill_connection,
)
from sagaloom._cli._explain import explain
from sagaloom._cli._flags import worker_config
from sagaloom._config._settings import setting
from sagaloom._ops._logging import configure_logging
from sagaloom._wire._release import VERSION
from sagaloom.worker._registry import load_sagas

__all__ = [
    "CLI_ENV",
    "UI_FILE",
    "CliError",
    "apply_tls_flags",
    "default_ui",
    "main",
    "parser",
    "worker_config",
]


def parser() -> argparse.ArgumentParser:
    """The ``saga`` parser: every command, its flags, and an example in its ``--help``."""
    level, form = setting("log_level"), setting("log_format")
    top = argparse.ArgumentParser(prog="saga", description="sagaloom: sagas on Temporal")
    top.add_argument("--log-level", default=level.read(os.environ), help=level.help)
    top.add_argument("--log-format", choices=form.choices, default=form.read(os.environ),
                     help=f"{form.help} ({form.env})")  # fmt: skip
    sub = top.add_subparsers(dest="command", required=True)
    top.add_argument("--version", action="version", version=f"sagaloom {VERSION}")
    groups = (_workers, _sagas, _graphs, _incidents, _services, _locks, _broker, _tools, _upgrade)
    for group in groups:
        group.register(sub)
    return top


_parser = parser  # the name the TLS test has used


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """Entry point of the ``saga`` console script: run the command, then exit the process.

    The process ends with ``os._exit`` once output is flushed: the Temporal runtime's native
    threads can call into Python while the interpreter finalizes, which was seen to abort a
    finished command (SIGABRT after its work was done).
    """
    code = _run(argv)
    sys.stdout.flush()
    sys.stderr.flush()
    logging.shutdown()
    os._exit(code)


def _run(argv: Sequence[str] | None) -> int:
    args = parser().parse_args(argv)
    configure_logging(args.log_level.upper(), None, json_lines=args.log_format == "json")
    apply_tls_flags(args)
    fill_connection(args)
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # find --module sagas in the current folder, as python -m
    try:
        if args.command == "worker" and (config := worker_config(args)).processes > 1:
            load_sagas(config.saga_modules)  # fail here, not in every child
            from sagaloom.worker._supervisor import Supervisor

            return Supervisor(config).run()  # in the main thread: it owns signals
        code: int = asyncio.run(args.handler(args))
        return code
    except KeyboardInterrupt:
        return 130
    except Exception as err:
        said = explain(err, args)
        if said is None:
            raise
        print(f"saga {args.command}: error: {said}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
