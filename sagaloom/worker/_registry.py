"""Finding the sagas a worker runs and a client may start, in the modules named."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from typing import Any

from sagaloom._runtime import SagaWorkflow, check_importable
from sagaloom._saga._definition import (
    Activity,
    ChildSaga,
    Command,
    Http,
    Saga,
    SagaDefinitionError,
    step_actions,
)

__all__ = [
    "UnknownSagaError",
    "broker_users",
    "find_saga",
    "load_sagas",
    "saga_activities",
    "saga_services",
]


class UnknownSagaError(LookupError):
    """No registered saga has the requested name."""

    def __init__(self, name: str, known: Iterable[str]) -> None:
        self.name = name
        """The name asked for."""
        names = ", ".join(sorted(known)) or "none (no module with sagas was named)"
        super().__init__(
            f"unknown saga {name!r}; known sagas: {names}. Name the module that defines it: "
            "--module mypackage.sagas (or SAGALOOM_SAGA_MODULES=mypackage.sagas)"
        )


def load_sagas(modules: Iterable[str] = ()) -> dict[str, type[SagaWorkflow]]:
    """Import ``modules`` and collect their saga workflow classes.

    Returns:
        Workflow classes by saga name.

    Raises:
        SagaDefinitionError: if two sagas share a name or a class cannot be re-imported.
    """
    found: dict[str, type[SagaWorkflow]] = {}
    for module_name in modules:
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


def saga_activities(sagas: Iterable[type[SagaWorkflow]]) -> list[Callable[..., Any]]:
    """The activity functions that ``sagas`` call through ``Activity(fn)`` (child sagas too).

    A worker registers them with the sagas, so ``saga worker --module myapp.sagas`` runs a saga
    whose steps call your own activities. Activities named by string are yours to register.
    """
    found: dict[int, Callable[..., Any]] = {}
    for saga in _with_children(cls.saga for cls in sagas):
        for step in saga.steps:
            for action in step_actions(step):
                if isinstance(action, Activity) and callable(action.activity):
                    found.setdefault(id(action.activity), action.activity)
    return list(found.values())


def saga_services(sagas: Iterable[type[SagaWorkflow]]) -> list[tuple[str, str, str]]:
    """``(saga, step, service)`` for every HTTP action of ``sagas`` (child sagas too)."""
    found: list[tuple[str, str, str]] = []
    for saga in _with_children(cls.saga for cls in sagas):
        for step in saga.steps:
            for action in step_actions(step):
                if isinstance(action, Http):
                    found.append((saga.name, step.name, action.service))
    return found


def broker_users(sagas: Iterable[type[SagaWorkflow]]) -> list[str]:
    """The sagas (child sagas too) that need the broker: a ``Command`` step or ``events=True``."""
    return [
        saga.name
        for saga in _with_children(cls.saga for cls in sagas)
        if saga.events or any(isinstance(a, Command) for s in saga.steps for a in step_actions(s))
    ]


def _with_children(sagas: Iterable[Saga[Any]]) -> list[Saga[Any]]:
    """``sagas`` and every saga they run as a child step, each once."""
    todo, seen, out = list(sagas), set[str](), []
    while todo:
        saga = todo.pop()
        if saga.name in seen:
            continue
        seen.add(saga.name)
        out.append(saga)
        todo.extend(s.action.saga for s in saga.steps if isinstance(s.action, ChildSaga))
    return out
