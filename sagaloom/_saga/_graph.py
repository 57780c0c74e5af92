"""The shape of a saga: step dependencies and step kinds, checked when the saga is defined.

A step runs after the steps it depends on (``Step.after``; by default the step before it in the
list, so a plain list is a sequence). Started steps are compensated in reverse topological
order: a step's compensation runs only after the compensations of every started step that
depends on it. Step kinds follow Richardson: compensatable steps, at most one pivot (the point of
no return), then retriable steps that depend on the pivot, have no compensation, and retry
forward until they succeed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

__all__ = ["Graph", "StepKind", "resolve_graph"]

StepKind = Literal["compensatable", "pivot", "retriable"]
"""What a step is in Richardson's model."""


class _StepLike(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def after(self) -> Sequence[str] | None: ...
    @property
    def kind(self) -> StepKind: ...
    @property
    def compensation(self) -> object | None: ...


class GraphError(ValueError):
    """Raised by :func:`resolve_graph`; the caller turns it into a ``SagaDefinitionError``."""


@dataclass(frozen=True)
class Graph:
    """Resolved dependencies of a saga's steps."""

    depends_on: Mapping[str, tuple[str, ...]]
    """Direct dependencies of each step."""
    descendants: Mapping[str, frozenset[str]]
    """Every step that (transitively) depends on each step."""
    sequential: bool
    """Whether the steps simply run one after another, in list order."""


def resolve_graph(steps: Sequence[_StepLike]) -> Graph:
    """Resolve and check the dependencies and kinds of ``steps``.

    Raises:
        GraphError: naming the step: an unknown or self dependency, a cycle, two pivots, a
            retriable step with a compensation or not after the pivot, a step after the pivot
            that is not retriable.
    """
    names = [s.name for s in steps]
    depends_on: dict[str, tuple[str, ...]] = {}
    for i, step in enumerate(steps):
        after = tuple(step.after) if step.after is not None else tuple(names[i - 1 : i])
        for dep in after:
            if dep == step.name:
                raise GraphError(f"step {step.name!r}: depends on itself")
            if dep not in names:
                raise GraphError(f"step {step.name!r}: depends on unknown step {dep!r}")
        depends_on[step.name] = after
    order: list[str] = []
    remaining = dict(depends_on)
    while remaining:
        ready = [n for n in names if n in remaining and all(d in order for d in remaining[n])]
        if not ready:
            stuck = next(n for n in names if n in remaining)
            raise GraphError(f"step {stuck!r}: dependency cycle through {sorted(remaining)}")
        for name in ready:
            order.append(name)
            del remaining[name]
    descendants: dict[str, set[str]] = {n: set() for n in names}
    for name in reversed(order):
        for dep in depends_on[name]:
            descendants[dep] |= {name} | descendants[name]
    _check_kinds(steps, descendants)
    sequential = all(depends_on[n] == tuple(names[i - 1 : i]) for i, n in enumerate(names))
    return Graph(
        depends_on=depends_on,
        descendants={n: frozenset(d) for n, d in descendants.items()},
        sequential=sequential,
    )


def _check_kinds(steps: Sequence[_StepLike], descendants: Mapping[str, set[str]]) -> None:
    pivots = [s.name for s in steps if s.kind == "pivot"]
    if len(pivots) > 1:
        raise GraphError(f"step {pivots[1]!r}: a saga has at most one pivot (also {pivots[0]!r})")
    after_pivot = descendants[pivots[0]] if pivots else set()
    for step in steps:
        if step.kind == "retriable":
            if step.compensation is not None:
                raise GraphError(f"step {step.name!r}: a retriable step has no compensation")
            if step.name not in after_pivot:
                raise GraphError(
                    f"step {step.name!r}: a retriable step must run after the pivot"
                    + ("" if pivots else " (the saga has no pivot)")
                )
        elif step.name in after_pivot:
            raise GraphError(
                f"step {step.name!r}: runs after the pivot {pivots[0]!r}, so it must be retriable"
            )
