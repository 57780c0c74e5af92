"""Finding the sagas a worker runs and a client may start: the examples plus user modules."""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from typing import Any

from workflows import Saga, SagaDefinitionError, SagaWorkflow, check_importable

__all__ = ["EXAMPLE_MODULES", "UnknownSagaError", "find_saga", "load_sagas"]

EXAMPLE_MODULES = ("workflows.order", "workflows.trip")
"""Modules holding the example sagas, always registered."""


class UnknownSagaError(LookupError):
    """No registered saga has the requested name."""

    def __init__(self, name: str, known: Iterable[str]) -> None:
        self.name = name
        """The name asked for."""
        super().__init__(f"unknown saga {name!r}; known sagas: {', '.join(sorted(known))}")


def load_sagas(modules: Iterable[str] = ()) -> dict[str, type[SagaWorkflow]]:
    """Import the example modules and ``modules`` and collect their saga workflow classes.

    Returns:
        Workflow classes by saga name.

    Raises:
        SagaDefinitionError: if two sagas share a name or a class cannot be re-imported.
    """
    found: dict[str, type[SagaWorkflow]] = {}
    for module_name in (*EXAMPLE_MODULES, *modules):
        module = importlib.import_module(module_name)
        for value in vars(module).values():
            if (
                isinstance(value, type)
                and issubclass(value, SagaWorkflow)
                and value is not SagaWorkflow
            ):
                check_importable(value)
                other = found.get(value.saga.name)
                if other is not None and other is not value:
                    raise SagaDefinitionError(f"two sagas are named {value.saga.name!r}")
                found[value.saga.name] = value
    return found


def find_saga(name: str, sagas: dict[str, type[SagaWorkflow]]) -> Saga[Any]:
    """The definition of saga ``name``.

    Raises:
        UnknownSagaError: naming the known sagas.
    """
    if name not in sagas:
        raise UnknownSagaError(name, sagas)
    return sagas[name].saga
