"""What every ``saga`` command shares: its error type, connection flags, input readers."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from temporalio.client import Client

from sagaloom._config._settings import CLI_SETTINGS, setting
from sagaloom.client._runs import DEFAULT_UI, connect
from sagaloom.server._stack import UI_FILE

__all__ = [
    "CLI_ENV",
    "DATA_DIR",
    "MAX_ID_LENGTH",
    "MODULE_HELP",
    "TLS_FLAGS",
    "UI_FILE",
    "CliError",
    "Handler",
    "add_command",
    "apply_tls_flags",
    "client",
    "connection_flags",
    "default_ui",
    "fill_connection",
    "module_flag",
    "modules",
    "read_json",
    "task_queue_flag",
    "workflow_id",
]

Handler = Callable[[argparse.Namespace], Coroutine[Any, Any, int]]
"""A command: reads its parsed arguments, prints, returns the exit code."""

DATA_DIR = Path(".sagaloom")

CLI_ENV = tuple(s.env for s in CLI_SETTINGS)
"""Variables the ``saga`` command itself reads (the worker's are :class:`WorkerConfig`'s)."""

MODULE_HELP = setting("saga_modules").help

MAX_ID_LENGTH = 1000
"""Longest workflow id Temporal accepts by default."""

TLS_FLAGS = (
    ("api-key", "TEMPORAL_API_KEY"),
    ("tls-cert-path", "TEMPORAL_TLS_CLIENT_CERT_PATH"),
    ("tls-key-path", "TEMPORAL_TLS_CLIENT_KEY_PATH"),
    ("tls-ca-path", "TEMPORAL_TLS_SERVER_CA_CERT_PATH"),
    ("tls-server-name", "TEMPORAL_TLS_SERVER_NAME"),
)
"""Connection flags and the standard Temporal variables they set."""


class CliError(Exception):
    """A user-facing error: printed as one line, exit code 2."""


def default_ui() -> str:
    """The Web UI that links point to: ``SAGALOOM_UI``, else the one ``saga dev`` runs here.

    ``saga dev`` (and ``./run dev``) note their UI's URL in ``.sagaloom/ui-url`` while they run,
    so links are right when its UI is not on :8233; else ``http://localhost:8233``.
    """
    if os.environ.get("SAGALOOM_UI"):
        return os.environ["SAGALOOM_UI"]
    with contextlib.suppress(OSError):
        noted = (DATA_DIR / UI_FILE).read_text().strip()
        if noted.startswith(("http://", "https://")):
            return noted
    return DEFAULT_UI


def add_command(
    sub: Any, name: str, handler: Handler, help: str, example: str
) -> argparse.ArgumentParser:
    """A sub-command whose ``--help`` ends with an example."""
    parser: argparse.ArgumentParser = sub.add_parser(
        name,
        help=help,
        description=help,
        epilog=f"example:\n  {example}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.set_defaults(handler=handler)
    return parser


def connection_flags(parser: argparse.ArgumentParser) -> None:
    """``--address``, ``--namespace`` (default: their variables), ``--ui``, TLS and API key."""
    for name in ("address", "namespace"):
        s = setting(name)
        parser.add_argument(
            s.flag or "", dest=s.field, metavar=s.metavar, help=f"{s.help} ({s.env})"
        )
    parser.add_argument("--ui", default=default_ui(), help="Web UI base URL for links")
    secure = parser.add_argument_group("TLS and API keys (flags override TEMPORAL_* variables)")
    for flag, env in TLS_FLAGS:
        secure.add_argument(
            f"--{flag}", metavar="PATH" if "path" in flag else "VALUE", help=f"sets {env}"
        )


def apply_tls_flags(args: argparse.Namespace) -> None:
    """Turn TLS/API-key flags into Temporal's standard variables, which every connect reads."""
    for flag, variable in TLS_FLAGS:
        value = getattr(args, flag.replace("-", "_"), None)
        if value:
            os.environ[variable] = value


def fill_connection(args: argparse.Namespace) -> None:
    """Connection flags not given take their variable's value, then the default."""
    for name in ("address", "namespace"):
        if hasattr(args, name) and not getattr(args, name):
            setattr(args, name, setting(name).read(os.environ))


async def client(args: argparse.Namespace) -> Client:
    """A client for ``args.address``; payloads encrypted as the workers do.

    Raises:
        CliError: when Temporal cannot be reached there.
    """
    try:
        return await connect(args.address, args.namespace)  # keys: the environment's
    except RuntimeError as err:
        raise CliError(f"cannot reach Temporal at {args.address}: {err}") from None


def modules(args: argparse.Namespace) -> list[str]:
    """The saga modules named by ``--module`` and ``SAGALOOM_SAGA_MODULES``."""
    return [*args.module, *setting("saga_modules").read(os.environ)]


def workflow_id(value: str, flag: str = "--id") -> str:
    """A workflow id as given on the command line, checked.

    Raises:
        CliError: empty, too long, or with control characters (a newline, say).
    """
    if not value:
        raise CliError(f"{flag} is empty")
    if len(value) > MAX_ID_LENGTH:
        raise CliError(f"{flag} is {len(value)} characters; the limit is {MAX_ID_LENGTH}")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise CliError(f"{flag} {value!r} holds control characters")
    return value


def read_json(text: str, flag: str) -> Any:
    """JSON from a flag: inline, ``@path`` (a file) or ``-`` (standard input).

    Raises:
        CliError: naming the flag, when it cannot be read or parsed.
    """
    if text == "-":
        text = sys.stdin.read()
    elif text.startswith("@"):
        try:
            text = Path(text[1:]).read_text()
        except OSError as err:
            raise CliError(f"{flag} {text}: {err.strerror or err}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise CliError(f"{flag} is not valid JSON: {err}") from None
    except RecursionError:
        raise CliError(f"{flag} is nested too deeply") from None


def task_queue_flag(parser: argparse.ArgumentParser, help: str) -> None:
    """``--task-queue``, by default ``SAGALOOM_TASK_QUEUE`` (else the default queue)."""
    queue = setting("task_queue")
    parser.add_argument("--task-queue", default=queue.read(os.environ), help=help)


def module_flag(parser: argparse.ArgumentParser) -> None:
    """``--module``, repeatable: where the sagas a command names are defined."""
    parser.add_argument("--module", action="append", default=[], help=MODULE_HELP)
