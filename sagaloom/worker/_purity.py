"""Which saga modules a worker passes through the workflow sandbox: their builders checked once.

The sandbox re-imports a saga's module for every run, so that a step builder reading the clock
or a random number is refused while it runs; a module of ten sagas then builds ten sagas per run.
A worker instead checks each registered saga once, at its start, and passes its module through:

* **statically**: the code each builder reaches (its own, the functions it calls, transitively)
  touches no clock, random numbers, I/O, environment or other process state, imports nothing
  and changes no module global (which would be kept from one run to the next);
* **in the sandbox**: the module is imported once inside it (the SDK's own check, with the
  module not yet passed through), so a value computed at import from the clock is refused.

A module that fails either check, or also defines a workflow that is not a saga, stays
sandboxed as before (the sandbox refuses the builder at run time) and the worker says why in
one line. The static check is conservative: what it cannot prove harmless keeps the sandbox.
"""

from __future__ import annotations

import builtins
import dataclasses
import dis
import functools
import logging
import sys
import types
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from sagaloom._runtime import SagaWorkflow
from sagaloom._saga._definition import Saga

__all__ = ["builders", "impurities", "passable_modules"]

log = logging.getLogger("sagaloom.worker")

IMPURE_MODULES = frozenset(
    {
        "asyncio", "concurrent", "datetime", "http", "httpx", "io", "logging", "multiprocessing",
        "os", "pathlib", "random", "requests", "secrets", "select", "shutil", "signal", "socket",
        "sqlite3", "ssl", "subprocess", "sys", "tempfile", "threading", "time", "urllib", "uuid",
    }
)  # fmt: skip
"""Modules whose functions read the clock, random numbers, I/O or process state."""
IMPURE_BUILTINS = frozenset(
    {"__import__", "breakpoint", "compile", "eval", "exec", "globals", "hash", "id", "input",
     "open", "vars"}
)  # fmt: skip
"""Builtins whose answer differs between processes or runs (``hash`` of a str: PYTHONHASHSEED)."""
CLOCK_ATTRIBUTES = frozenset({"now", "utcnow", "today", "fromtimestamp", "utcfromtimestamp"})
TRUSTED = ("sagaloom", "temporalio", "pydantic", "pydantic_core", "typing", "typing_extensions")
"""Packages whose functions are not scanned: sagaloom's own, and the SDK's deterministic
``workflow.now()``, ``workflow.random()`` and ``workflow.uuid4()``."""
_LOADS = frozenset({"LOAD_GLOBAL", "LOAD_NAME", "LOAD_DEREF", "LOAD_CLASSDEREF"})
_ATTRS = frozenset({"LOAD_ATTR", "LOAD_METHOD"})
_DEPTH = 8
_MISSING = object()


def builders(saga: Saga[Any]) -> Iterator[tuple[str, Callable[..., Any]]]:
    """Every function a saga's definition holds (keys, conditions, bodies, paths, items …).

    Activity definitions run in activities, outside the sandbox, and are left out.
    """
    yield from _walk(saga, saga.name, set())


def _walk(value: Any, where: str, seen: set[int]) -> Iterator[tuple[str, Callable[..., Any]]]:
    if id(value) in seen or isinstance(value, (str, bytes, int, float, bool, type(None), type)):
        return
    seen.add(id(value))
    if isinstance(value, types.MethodType):
        value = value.__func__
    if isinstance(value, types.FunctionType):
        if not hasattr(value, "__temporal_activity_definition"):
            yield where, value
        return
    if callable(value) and not dataclasses.is_dataclass(value):  # a partial, a callable object
        yield where, value
        return
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _walk(item, f"{where}[{key!r}]", seen)
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            name = getattr(item, "name", None)
            yield from _walk(item, f"{where}[{name or index}]", seen)
    elif dataclasses.is_dataclass(value):
        for field in dataclasses.fields(value):
            yield from _walk(getattr(value, field.name), f"{where}.{field.name}", seen)


def impurities(fn: Callable[..., Any]) -> list[str]:
    """What ``fn`` reaches that a saga's builder must not (empty: nothing found)."""
    found: list[str] = []
    if isinstance(fn, types.FunctionType):
        _scan_function(fn, found, set(), 0)
    else:  # a partial, a bound method, a builtin, a callable object
        _check(fn, getattr(fn, "__name__", type(fn).__name__), [], "the builder", found, set(), 0)
    return found


def _trusted(module: str | None) -> bool:
    return bool(module) and (module or "").split(".")[0] in TRUSTED


def _impure(module: str | None) -> bool:
    return bool(module) and (module or "").split(".")[0] in IMPURE_MODULES


def _scan_function(fn: Any, found: list[str], seen: set[int], depth: int) -> None:
    if id(fn) in seen or depth > _DEPTH or _trusted(getattr(fn, "__module__", None)):
        return
    seen.add(id(fn))
    closure = {
        name: cell.cell_contents
        for name, cell in zip(fn.__code__.co_freevars, fn.__closure__ or (), strict=False)
        if _filled(cell)
    }
    _scan_code(fn.__code__, fn.__globals__, closure, found, seen, depth)


def _filled(cell: Any) -> bool:
    try:
        cell.cell_contents  # noqa: B018 (an empty cell raises)
    except ValueError:
        return False
    return True


def _scan_code(
    code: types.CodeType,
    scope: dict[str, Any],
    closure: dict[str, Any],
    found: list[str],
    seen: set[int],
    depth: int,
) -> None:
    where = code.co_qualname
    ops = list(dis.get_instructions(code))
    for index, op in enumerate(ops):
        if op.opname == "IMPORT_NAME":
            found.append(f"{where} imports {op.argval}")
        elif op.opname in ("STORE_GLOBAL", "DELETE_GLOBAL"):
            found.append(f"{where} changes the module global {op.argval} (kept between runs)")
        elif op.opname in _LOADS:
            name = str(op.argval)
            if name in closure:
                target = closure[name]
            elif name in scope:
                target = scope[name]
            elif op.opname != "LOAD_DEREF":
                target = getattr(builtins, name, _MISSING)
            else:
                continue  # a variable of the enclosing function: not a global
            if target is _MISSING:
                continue
            attributes = []
            for after in ops[index + 1 :]:
                if after.opname not in _ATTRS:
                    break
                attributes.append(str(after.argval))
            _check(target, name, attributes, where, found, seen, depth)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            _scan_code(const, scope, {}, found, seen, depth)


def _check(
    target: Any,
    name: str,
    attributes: list[str],
    where: str,
    found: list[str],
    seen: set[int],
    depth: int,
) -> None:
    """Judge one global a builder loads, followed by the attributes it reads from it."""
    shown = ".".join([name, *attributes])
    for attribute in attributes:  # follow modules down to what is used
        if not isinstance(target, types.ModuleType) or _impure(target.__name__):
            break
        target = getattr(target, attribute, _MISSING)
        if target is _MISSING:
            return
    if isinstance(target, types.ModuleType):
        if _impure(target.__name__):
            found.append(f"{where} reaches {shown} (module {target.__name__})")
        return
    module = getattr(target, "__module__", None)
    if isinstance(target, type):
        if _impure(module) and (
            CLOCK_ATTRIBUTES.intersection(attributes) or module in ("random", "secrets")
        ):
            found.append(f"{where} reaches {shown}")
        elif not _impure(module) and not _trusted(module):
            _scan_class(target, attributes, where, found, seen, depth)
        return
    if isinstance(target, types.BuiltinFunctionType | types.BuiltinMethodType):
        owner = getattr(target, "__self__", None)
        owner_module = owner.__name__ if isinstance(owner, types.ModuleType) else module
        if owner is not None and not isinstance(owner, types.ModuleType):
            owner_module = type(owner).__module__
        if _impure(owner_module) or (owner_module == "builtins" and name in IMPURE_BUILTINS):
            found.append(f"{where} reaches {shown}")
        return
    if isinstance(target, types.MethodType):
        owner = target.__self__ if isinstance(target.__self__, type) else type(target.__self__)
        if _own_class(owner):  # ``self.other()`` inside it: every method of the class
            _scan_methods(owner, where, found, seen, depth)
        target = target.__func__
    if isinstance(target, types.FunctionType):
        if _impure(module):
            found.append(f"{where} reaches {shown}")
        else:
            _scan_function(target, found, seen, depth + 1)
        return
    if isinstance(target, functools.partial):  # its function, and what it was given
        _check(target.func, name, [], where, found, seen, depth)
        for given in (*target.args, *target.keywords.values()):
            _check(given, name, [], where, found, seen, depth)
        return
    if not attributes and _own_class(type(target)) and callable(target):
        _scan_methods(type(target), where, found, seen, depth)  # a callable object of the user's
        return
    if _impure(type(target).__module__) and not _is_value(target):
        found.append(f"{where} reaches {shown} (a {type(target).__name__})")
    elif attributes and not _trusted(type(target).__module__):  # a helper object's method
        method = getattr(target, attributes[0], None)
        if isinstance(method, types.MethodType | types.FunctionType):
            _check(method, name, attributes[1:], where, found, seen, depth)


def _own_class(cls: type) -> bool:
    """A class of the user's (not the standard library's, the SDK's or sagaloom's)."""
    module = cls.__module__
    return module not in ("builtins", "functools") and not _trusted(module) and not _impure(module)


def _scan_methods(cls: type, where: str, found: list[str], seen: set[int], depth: int) -> None:
    """Every function a class of the user's defines (a method may call any other)."""
    for klass in cls.__mro__:
        if not _own_class(klass):
            continue
        for name, member in vars(klass).items():
            if isinstance(member, classmethod | staticmethod):
                member = member.__func__
            if isinstance(member, types.FunctionType):
                _check(member, f"{klass.__name__}.{name}", [], where, found, seen, depth)


def _scan_class(
    cls: type, attributes: list[str], where: str, found: list[str], seen: set[int], depth: int
) -> None:
    """A class of the user's: what making one runs, and the method a builder calls on it."""
    names = [*attributes[:1], "__init__", "__new__", "__post_init__"]
    for name in names:
        member = cls.__dict__.get(name) or getattr(cls, name, None)
        if isinstance(member, classmethod | staticmethod):
            member = member.__func__
        if isinstance(member, types.FunctionType):
            _check(member, f"{cls.__name__}.{name}", [], where, found, seen, depth)
    for field in getattr(cls, "model_fields", {}).values():  # a pydantic model's defaults
        factory = getattr(field, "default_factory", None)
        if factory is not None:
            _check(factory, f"{cls.__name__} default", [], where, found, seen, depth)


def _is_value(target: Any) -> bool:
    """A plain value (a date, a UUID, a timedelta constant): reading it is deterministic."""
    return type(target).__module__ in ("datetime", "uuid") and type(target).__name__ in (
        "date", "datetime", "time", "timedelta", "timezone", "UUID"
    )  # fmt: skip


def passable_modules(
    workflows: Sequence[type],
    prepare: Callable[[type], None],
) -> list[str]:
    """The saga modules of ``workflows`` that may pass through the sandbox (see the module doc).

    Args:
        workflows: The worker's workflow classes.
        prepare: Imports a workflow's module once inside the sandbox; raises when refused.
    """
    by_module: dict[str, list[type[SagaWorkflow]]] = {}
    for cls in workflows:
        if isinstance(cls, type) and issubclass(cls, SagaWorkflow) and hasattr(cls, "saga"):
            by_module.setdefault(cls.__module__, []).append(cls)
    passable = []
    for module_name, classes in by_module.items():
        why = _why_not(module_name, classes, prepare)
        if why is None:
            passable.append(module_name)
        else:
            log.warning(
                "saga module %s stays in the workflow sandbox, re-imported for each run "
                "(slower): %s",
                module_name,
                why,
            )
    return passable


def _why_not(
    module_name: str, classes: Iterable[type[SagaWorkflow]], prepare: Callable[[type], None]
) -> str | None:
    module = sys.modules.get(module_name)
    if module is None or module_name == "__main__":
        return "it is not importable by name (a script run as __main__)"
    for value in vars(module).values():
        if (
            isinstance(value, type)
            and value.__module__ == module_name  # defined here (an import is its module's)
            and hasattr(value, "__temporal_workflow_definition")
            and not issubclass(value, SagaWorkflow)
        ):
            return f"it also defines the workflow {value.__name__}, which is not a saga"
    for cls in classes:
        for where, fn in builders(cls.saga):
            found = impurities(fn)
            if found:
                return f"{where}: {found[0]} (in a builder, use workflow.now(), workflow.random())"
    try:
        prepare(next(iter(classes)))
    except Exception as err:  # the SDK's own refusal: the sandbox keeps the module
        return f"importing it in the sandbox: {type(err).__name__}: {err}"
    return None
