"""Which steps may run, and which may be undone, given what has happened: pure decisions.

The saga's scheduling logic, apart from Temporal and I/O (as Eventuate Tram keeps its
``nextStepToExecute`` apart from the message handling): plain functions over a step graph's
dependencies, unit- and property-tested in milliseconds. The runtime applies them.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping

__all__ = ["ready_to_run", "ready_to_undo", "undo_order"]


def ready_to_run(
    depends_on: Mapping[str, Iterable[str]], waiting: Iterable[str], finished: Collection[str]
) -> list[str]:
    """The waiting steps whose dependencies have all finished, in the order given.

    Args:
        depends_on: Each step's direct dependencies.
        waiting: Steps not started yet, in definition order.
        finished: Steps that finished (done or skipped).
    """
    return [step for step in waiting if all(dep in finished for dep in depends_on[step])]


def undo_order(started: Iterable[str]) -> list[str]:
    """The order compensations are considered in: reverse start order."""
    return list(reversed(list(started)))


def ready_to_undo(
    descendants: Mapping[str, Collection[str]],
    started: Collection[str],
    todo: Iterable[str],
    undone: Collection[str],
) -> list[str]:
    """The steps in ``todo`` whose compensation may run now, in the order given.

    A step's compensation waits until every started step that depends on it (transitively) has
    been undone: reverse topological order.

    Args:
        descendants: Every step that depends, transitively, on each step.
        started: Steps whose compensation is registered (started, not refused).
        todo: Started steps not yet being undone, in :func:`undo_order`.
        undone: Steps whose compensation has finished.
    """
    return [
        step
        for step in todo
        if all(later in undone for later in descendants[step] if later in started)
    ]
