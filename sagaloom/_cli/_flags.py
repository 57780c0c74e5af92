"""The worker's flags, generated from the settings table, and the configuration they make."""

from __future__ import annotations

import argparse
from dataclasses import replace
from typing import Any

from sagaloom._config._settings import WORKER_SETTINGS, ConfigError, Setting
from sagaloom.worker._config import WorkerConfig

__all__ = ["worker_config", "worker_flags"]

_METAVARS = {"count": "N", "rate": "PER_SECOND", "seconds": "SECONDS"}
_CONNECTION = ("address", "namespace")  # added by connection_flags, for every command


def worker_flags(parser: argparse.ArgumentParser, *, dev: bool = False) -> None:
    """One flag per setting that has one (``saga dev``: those marked ``on_dev``)."""
    group = parser.add_argument_group("worker settings (flags override SAGALOOM_* variables)")
    for s in WORKER_SETTINGS:
        if s.flag is None or s.field in _CONNECTION or (dev and not s.on_dev):
            continue
        help = s.flag_help()
        if s.kind == "bool":
            group.add_argument(s.flag, dest=s.field, action="store_const", const=not s.default,
                               help=help)  # fmt: skip
        elif s.kind in ("list", "services"):
            group.add_argument(s.flag, dest=s.field, action="append", metavar=s.metavar,
                               help=help)  # fmt: skip
        else:
            metavar = s.metavar or _METAVARS.get(s.kind, "VALUE")
            group.add_argument(s.flag, dest=s.field, metavar=None if s.choices else metavar,
                               choices=s.choices or None, help=help)  # fmt: skip


def _services(s: Setting, pairs: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs:
        name, sep, url = pair.partition("=")
        if not sep or not name or not url.startswith(("http://", "https://")):
            raise ConfigError(f"{s.flag} {pair!r}: expected NAME=http://host:port")
        out[name.lower()] = url
    return out


def worker_config(args: argparse.Namespace) -> WorkerConfig:
    """The environment's configuration with the command line's flags on top.

    Raises:
        ConfigError: naming the flag (or variable) whose value is invalid.
    """
    config = WorkerConfig.from_env()
    overrides: dict[str, Any] = {}
    for s in WORKER_SETTINGS:
        given = getattr(args, s.field, None)
        if given is None or given == []:
            continue
        current = getattr(config, s.field)
        if s.kind == "services":
            overrides[s.field] = {**current, **_services(s, given)}
        elif s.kind == "list":
            overrides[s.field] = (*current, *given)
        elif s.kind == "bool":
            overrides[s.field] = given
        else:
            overrides[s.field] = s.parse(given, s.flag or s.env)
    return replace(config, **overrides)
