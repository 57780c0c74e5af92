"""Make a public module's exported classes and functions carry its name (as httpx does)."""

from __future__ import annotations

from collections.abc import Iterable, MutableMapping
from types import FunctionType
from typing import Any

__all__ = ["publish"]


def publish(namespace: MutableMapping[str, Any], names: Iterable[str], module: str) -> None:
    """Set ``__module__`` of the classes and functions in ``names`` to ``module``.

    Reprs, docs and error messages then show ``sagaloom.client.Outcome``, not the private module
    it is defined in. Constants are left as they are.
    """
    for name in names:
        value = namespace[name]
        if isinstance(value, type | FunctionType):
            value.__module__ = module
