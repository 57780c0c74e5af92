"""The public API is what ``__all__`` says, under its public names (httpx's test, adapted)."""

from __future__ import annotations

import importlib
import inspect
from types import ModuleType

import pytest

PUBLIC = [
    "sagaloom",
    "sagaloom.client",
    "sagaloom.converter",
    "sagaloom.participants",
    "sagaloom.server",
    "sagaloom.service",
    "sagaloom.storage",
    "sagaloom.testing",
    "sagaloom.worker",
]


@pytest.mark.parametrize("name", PUBLIC)
def test_all_public_names_are_exported_and_nothing_else(name: str) -> None:
    module = importlib.import_module(name)
    public = {
        member
        for member, value in vars(module).items()
        if not member.startswith("_") and not isinstance(value, ModuleType)
    }
    assert sorted(public) == sorted(module.__all__)
    assert len(set(module.__all__)) == len(module.__all__)


@pytest.mark.parametrize("name", PUBLIC)
def test_classes_and_functions_carry_their_public_module(name: str) -> None:
    module = importlib.import_module(name)
    for member in module.__all__:
        value = getattr(module, member)
        if inspect.isclass(value) or inspect.isfunction(value):
            assert value.__module__ == name, f"{name}.{member} says {value.__module__}"


def test_every_public_name_has_a_docstring() -> None:
    for name in PUBLIC:
        module = importlib.import_module(name)
        assert module.__doc__, name
        for member in module.__all__:
            value = getattr(module, member)
            if inspect.isclass(value) or inspect.isfunction(value):
                assert inspect.getdoc(value), f"{name}.{member} has no docstring"


def test_the_definition_api_imports_no_io_library() -> None:
    """``import sagaloom`` stays sandbox-safe: no HTTP client, no client or worker modules."""
    import subprocess
    import sys

    code = (
        "import sys, sagaloom; "
        "bad = [m for m in ('httpx', 'sagaloom.client', 'sagaloom.worker', 'sagaloom._cli') "
        "if m in sys.modules]; print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
