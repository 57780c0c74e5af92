"""A saga's drawing: its steps and compensations as boxes and arrows, read from the definition.

Pure: no I/O. :func:`drawing_of` reads a :class:`~sagaloom.Saga`; :func:`paint` lays a run's
step table (from a query or from history) over it. The renderers (``_render``) turn either into
Mermaid, DOT or SVG.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Literal

from sagaloom._saga._definition import (
    Action,
    Activity,
    ChildSaga,
    Command,
    ForEach,
    Http,
    Saga,
    Step,
    Timer,
)
from sagaloom._saga._model import SagaState, SagaStatus, StepState, StepStatus

__all__ = ["Box", "Drawing", "Paint", "drawing_of", "paint"]

Paint = Literal[
    "plain", "done", "running", "waiting", "held", "failed", "undoing", "undone", "undo-failed",
    "skipped", "not-run",
]  # fmt: skip
"""How a box is painted: ``plain`` when no run is laid over the drawing."""


@dataclass
class Box:
    """One step, or one step's compensation (``undo``)."""

    id: str
    """Unique in the drawing (``s0``, ``s0u``, …)."""
    title: str
    """The step's name (``undo <name>`` for a compensation)."""
    lines: list[str]
    """What it calls and how: its kind, its participant, a condition, a fan-out's items."""
    column: int
    """Its depth: the longest chain of steps before it (0 for the first)."""
    undo: bool = False
    """A compensation's box."""
    paint: Paint = "plain"
    """Its state in a painted run."""
    note: str = ""
    """A painted run's detail: an error, attempts, what it waits for, items done."""


@dataclass
class Drawing:
    """The boxes and arrows of one saga."""

    saga: str
    """The saga's name."""
    boxes: list[Box]
    """Steps in definition order, each followed by its compensation's box, if any."""
    arrows: list[tuple[str, str]]
    """Step to step: ``(before, after)`` by box id; ``start`` is the saga's start."""
    undoes: list[tuple[str, str]]
    """Step to its compensation's box."""
    title_note: str = ""
    """A painted run's status line (``COMPENSATED · order-42``)."""
    columns: int = field(default=0)
    """How many columns of steps."""


def drawing_of(saga: Saga[Any]) -> Drawing:
    """The drawing of ``saga``: its steps by dependency, each with its compensation."""
    ids = {step.name: f"s{i}" for i, step in enumerate(saga.steps)}
    depth: dict[str, int] = {}
    boxes: list[Box] = []
    arrows: list[tuple[str, str]] = []
    undoes: list[tuple[str, str]] = []
    for step in saga.steps:  # dependencies come first in the list (the graph checks it)
        before = saga.graph.depends_on[step.name]
        depth[step.name] = 1 + max((depth[b] for b in before), default=-1)
        box = Box(ids[step.name], step.name, _lines(step), depth[step.name])
        boxes.append(box)
        arrows += [(ids[b], box.id) for b in before] or [("start", box.id)]
        undo = _undo_lines(step)
        if undo is not None:
            boxes.append(Box(f"{box.id}u", f"undo {step.name}", undo, box.column, undo=True))
            undoes.append((box.id, f"{box.id}u"))
    return Drawing(saga.name, boxes, arrows, undoes, columns=1 + max(depth.values(), default=0))


def _lines(step: Step) -> list[str]:
    if isinstance(step.action, ForEach):
        fan = step.action
        lines = [f"for each item, {fan.max_concurrency} at once:", _describe(fan.do)]
    else:
        lines = [_describe(step.action)]
    if step.reply_timeout is not None and not isinstance(step.action, ForEach):
        lines.append(f"then waits for its reply (up to {_duration(step.reply_timeout)})")
    if step.kind != "compensatable":
        lines.append(step.kind)  # pivot (no return after it) or retriable (retried, never undone)
    if step.when is not None:
        lines.append(f"when {_name(step.when)}")
    if step.on_failure is not None:
        lines.append(f"on failure: {step.on_failure}")
    return lines


def _undo_lines(step: Step) -> list[str] | None:
    if step.compensation is not None:
        return [_describe(step.compensation)]
    if isinstance(step.action, ChildSaga):
        return ["the child saga compensates itself"]
    if isinstance(step.action, ForEach) and step.action.compensation is not None:
        return ["each item done, in reverse:", _describe(step.action.compensation)]
    return None


def _describe(action: Action) -> str:
    match action:
        case Http(service=service, method=method, path=path):
            return f"{service}: {method} {path if isinstance(path, str) else '(built)'}"
        case Command(subject=subject):
            return f"command {subject}"
        case Activity(activity=activity):
            return f"activity {activity if isinstance(activity, str) else _name(activity)}"
        case Timer(duration=duration):
            if isinstance(duration, timedelta):
                return f"timer {_duration(duration)}"
            return "timer (its duration built per run)"
        case ChildSaga(saga=child):
            return f"child saga {child.name}"
        case ForEach(do=do):
            return f"for each item: {_describe(do)}"
    return type(action).__name__  # pragma: no cover - every action kind is matched above


def _name(fn: Callable[..., Any]) -> str:
    name = getattr(fn, "__name__", "") or type(fn).__name__
    return "a condition" if name == "<lambda>" else name


def _duration(value: timedelta) -> str:
    seconds = int(value.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size} {unit}"
    return f"{seconds} s"


_FORWARD: dict[StepStatus, Paint] = {
    StepStatus.PENDING: "not-run",
    StepStatus.RUNNING: "running",
    StepStatus.WAITING: "waiting",
    StepStatus.DONE: "done",
    StepStatus.FAILED: "failed",
    StepStatus.COMPENSATING: "done",
    StepStatus.COMPENSATED: "done",
    StepStatus.COMPENSATION_FAILED: "done",
    StepStatus.COMPENSATION_SKIPPED: "done",
    StepStatus.SKIPPED: "skipped",
}
_UNDO: dict[StepStatus, Paint] = {
    StepStatus.COMPENSATING: "undoing",
    StepStatus.COMPENSATED: "undone",
    StepStatus.COMPENSATION_FAILED: "undo-failed",
}


def paint(drawing: Drawing, state: SagaState) -> Drawing:
    """``drawing`` with the run ``state`` laid over it: what ran, failed, was undone, waits.

    A step the run's table does not list never started (a table read from history lists only
    the steps that did); with a state of another saga, such steps are left plain.
    """
    steps = {s.name: s for s in state.steps}
    ours = state.saga == drawing.saga  # its steps missing from the state never started
    boxes = []
    for box in drawing.boxes:
        name = box.title.removeprefix("undo ") if box.undo else box.title
        step = steps.get(name)
        if step is None:
            boxes.append(dataclasses.replace(box, paint="not-run") if ours else box)
            continue
        if box.undo:
            undo_paint = _UNDO.get(step.status, "not-run")
            boxes.append(dataclasses.replace(box, paint=undo_paint, note=_undo_note(step)))
        elif state.status is SagaStatus.HELD and state.parked_step == name:
            note = " · ".join(filter(None, ["for an operator (saga redrive)", _note(step)]))
            boxes.append(dataclasses.replace(box, paint="held", note=note))
        else:
            boxes.append(dataclasses.replace(box, paint=_FORWARD[step.status], note=_note(step)))
    status = f"{state.status.value}" + (f" · {state.key}" if state.key else "")
    if state.waiting_for_key:
        status += f" · waiting for key {state.waiting_for_key}"
    return dataclasses.replace(drawing, boxes=boxes, title_note=status)


def _note(step: StepState) -> str:
    parts = []
    if step.status is StepStatus.WAITING and step.waiting_for:
        parts.append(f"waits for {step.waiting_for}")
    if step.items is not None:
        items = step.items
        counted = f"items {items.done} done, {items.failed} failed of {items.total}"
        parts.append(counted + (f", {items.undone} undone" if items.undone else ""))
    if step.attempts > 1:
        parts.append(f"{step.attempts} attempts")
    if step.status is StepStatus.FAILED and step.error:
        parts.append(_short(step.error))
    return " · ".join(parts)


def _undo_note(step: StepState) -> str:
    parts = []
    if step.compensation_attempts > 1:
        parts.append(f"{step.compensation_attempts} attempts")
    if step.status is StepStatus.COMPENSATION_FAILED and step.compensation_error:
        parts.append(_short(step.compensation_error))
    return " · ".join(parts)


def _short(text: str, limit: int = 90) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= limit else line[: limit - 1] + "…"
