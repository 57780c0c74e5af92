"""A drawing as Mermaid, as Graphviz DOT, or as a standalone SVG.

The SVG is laid out here, with no dependency: a saga's graph is a small DAG whose columns are
its steps' depths, so a grid is enough (each step with its compensation right under it, parallel
steps stacked in their column). Graphviz would need a system binary, and Mermaid's own
renderer a browser; neither is needed to read a saga.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterable
from xml.sax.saxutils import escape

from sagaloom._drawing._shapes import Box, Drawing, Paint

__all__ = ["FORMATS", "render", "to_dot", "to_mermaid", "to_svg"]

FORMATS = ("mermaid", "dot", "svg")
"""What :func:`render` writes."""

_COLOURS: dict[Paint, tuple[str, str, str]] = {  # fill, stroke, the word shown in the box
    "plain": ("#ffffff", "#455a64", ""),
    "done": ("#dcf2dc", "#2e7d32", "done"),
    "running": ("#dbe9ff", "#1565c0", "running"),
    "waiting": ("#fff3c4", "#a67c00", "waiting"),
    "held": ("#fff3c4", "#c62828", "held"),
    "failed": ("#ffd6d6", "#c62828", "failed"),
    "undoing": ("#ffe6cc", "#e65100", "undoing"),
    "undone": ("#ececec", "#616161", "undone"),
    "undo-failed": ("#ffd6d6", "#c62828", "undo failed"),
    "skipped": ("#f5f5f5", "#9e9e9e", "skipped"),
    "not-run": ("#ffffff", "#bdbdbd", "not run"),
}


def render(drawing: Drawing, fmt: str) -> str:
    """``drawing`` in format ``fmt`` (one of :data:`FORMATS`).

    Raises:
        ValueError: naming the format and the known ones.
    """
    if fmt == "mermaid":
        return to_mermaid(drawing)
    if fmt == "dot":
        return to_dot(drawing)
    if fmt == "svg":
        return to_svg(drawing)
    raise ValueError(f"unknown format {fmt!r}; choose one of: {', '.join(FORMATS)}")


def _text(box: Box) -> list[str]:
    word = _COLOURS[box.paint][2]
    return [*box.lines, *([f"{word}: {box.note}" if box.note else word] if word else [])]


# -- Mermaid ---------------------------------------------------------------------------------


def _mermaid_label(box: Box) -> str:
    parts = [f"<b>{_m(box.title)}</b>", *(f"<small>{_m(line)}</small>" for line in _text(box))]
    return "<br/>".join(parts)


def _m(text: str) -> str:
    return escape(text).replace('"', "#quot;")


def to_mermaid(drawing: Drawing) -> str:
    """A Mermaid flowchart (pastes into a README, an issue or the docs)."""
    title = drawing.saga + (f" · {drawing.title_note}" if drawing.title_note else "")
    lines = ["flowchart LR", f'  start(("{_m(title)}"))']
    for box in drawing.boxes:
        lines.append(f'  {box.id}["{_mermaid_label(box)}"]')
    lines += [f"  {a} --> {b}" for a, b in drawing.arrows]
    lines += [f"  {a} -. undone by .-> {b}" for a, b in drawing.undoes]
    paints = sorted({b.paint for b in drawing.boxes if b.paint != "plain"})
    for paint in paints:
        fill, stroke, _ = _COLOURS[paint]
        dash = ",stroke-dasharray: 4 4" if paint in ("not-run", "skipped") else ""
        lines.append(f"  classDef {_cls(paint)} fill:{fill},stroke:{stroke}{dash}")
        ids = ",".join(b.id for b in drawing.boxes if b.paint == paint)
        lines.append(f"  class {ids} {_cls(paint)}")
    plain_undos = [b.id for b in drawing.boxes if b.undo and b.paint == "plain"]
    if plain_undos:
        lines += ["  classDef undo stroke-dasharray: 4 4", f"  class {','.join(plain_undos)} undo"]
    return "\n".join(lines) + "\n"


def _cls(paint: Paint) -> str:
    return paint.replace("-", "_")


# -- DOT -------------------------------------------------------------------------------------


def _d(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def to_dot(drawing: Drawing) -> str:
    """A Graphviz digraph (``dot -Tpng``), left to right."""
    title = drawing.saga + (f" · {drawing.title_note}" if drawing.title_note else "")
    lines = [
        f'digraph "{_d(drawing.saga)}" {{',
        "  rankdir=LR;",
        '  node [shape=box, style="rounded,filled", fontname="Helvetica", fontsize=10];',
        f'  start [shape=circle, label="{_d(title)}", fillcolor="#eceff1"];',
    ]
    for box in drawing.boxes:
        fill, stroke, _ = _COLOURS[box.paint]
        style = "rounded,filled,dashed" if box.undo or box.paint == "not-run" else "rounded,filled"
        label = "\\n".join(_d(t) for t in (box.title, *_text(box)))
        lines.append(
            f'  {box.id} [label="{label}", fillcolor="{fill}", color="{stroke}", style="{style}"];'
        )
    lines += [f"  {a} -> {b};" for a, b in drawing.arrows]
    lines += [f'  {a} -> {b} [style=dashed, label="undone by"];' for a, b in drawing.undoes]
    lines += [f"  {{rank=same; {a}; {b};}}" for a, b in drawing.undoes]
    return "\n".join([*lines, "}"]) + "\n"


# -- SVG -------------------------------------------------------------------------------------

_W, _LINE, _PAD, _GAP_X, _GAP_Y, _START, _CHARS = 240, 16, 10, 56, 22, 120, 36


def _svg_lines(box: Box) -> list[str]:
    """A box's lines in the SVG: wrapped to its width, the run's note under its state."""
    word = _COLOURS[box.paint][2]
    lines = [*box.lines, *([word] if word else [])]
    wrapped = [part for line in lines for part in textwrap.wrap(line, _CHARS) or [""]]
    return wrapped + textwrap.wrap(box.note, _CHARS, max_lines=4, placeholder=" …")


def _height(drawing: Drawing) -> int:
    most = max((1 + len(_svg_lines(b)) for b in drawing.boxes), default=1)
    return _PAD * 2 + most * _LINE


def to_svg(drawing: Drawing) -> str:
    """A standalone SVG: steps left to right by dependency, each compensation under its step."""
    h = _height(drawing)
    cell = h * 2 + _GAP_Y  # a step and its compensation
    rows: dict[int, int] = {}
    where: dict[str, tuple[int, int]] = {}
    for box in drawing.boxes:
        if box.undo:
            continue
        row = rows.get(box.column, 0)
        rows[box.column] = row + 1
        x = _START + box.column * (_W + _GAP_X)
        y = 60 + row * (cell + _GAP_Y)
        where[box.id] = (x, y)
        where[f"{box.id}u"] = (x, y + h + _GAP_Y)
    width = _START + max(drawing.columns, 1) * (_W + _GAP_X)
    height = 60 + max(rows.values(), default=1) * (cell + _GAP_Y) + 20
    start_y = 60 + h // 2
    title = drawing.saga + (f" · {drawing.title_note}" if drawing.title_note else "")
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="Helvetica, Arial, sans-serif" '
        'font-size="12">',
        f"<title>{escape(title)}</title>",
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" '
        'fill="#455a64"/></marker></defs>',
        f'<text x="16" y="28" font-size="15" font-weight="bold">{escape(title)}</text>',
        f'<circle cx="40" cy="{start_y}" r="14" fill="#eceff1" stroke="#455a64"/>',
        f'<text x="40" y="{start_y + 4}" text-anchor="middle" font-size="10">start</text>',
    ]
    for a, b in drawing.arrows:
        bx, by = where[b]
        if a == "start":
            ax, ay = 54, start_y
        else:
            ax, ay = where[a][0] + _W, where[a][1] + h // 2
        out.append(_arrow(ax, ay, bx, by + h // 2))
    for a, _ in drawing.undoes:
        ax, ay = where[a]
        out.append(
            f'<line x1="{ax + _W // 2}" y1="{ay + h}" x2="{ax + _W // 2}" y2="{ay + h + _GAP_Y}" '
            'stroke="#455a64" stroke-dasharray="4 3" marker-end="url(#arrow)"/>'
        )
    for box in drawing.boxes:
        out += _box(box, *where[box.id], h)
    out.append("</svg>")
    return "\n".join(out) + "\n"


def _arrow(ax: int, ay: int, bx: int, by: int) -> str:
    mid = (ax + bx) // 2
    return (
        f'<path d="M {ax} {ay} C {mid} {ay}, {mid} {by}, {bx} {by}" fill="none" '
        'stroke="#455a64" marker-end="url(#arrow)"/>'
    )


def _box(box: Box, x: int, y: int, h: int) -> Iterable[str]:
    fill, stroke, _ = _COLOURS[box.paint]
    dashed = box.undo or box.paint in ("not-run", "skipped")
    dash = ' stroke-dasharray="5 3"' if dashed else ""
    width = 2.5 if box.paint in ("failed", "undo-failed", "held") else 1.2
    yield (
        f'<g class="step {box.paint}" data-step="{escape(box.title)}">'
        f'<rect x="{x}" y="{y}" width="{_W}" height="{h}" rx="8" fill="{fill}" '
        f'stroke="{stroke}" stroke-width="{width}"{dash}/>'
        f"<title>{escape(' · '.join([box.title, *_text(box)]))}</title>"
    )
    yield (
        f'<text x="{x + _PAD}" y="{y + _PAD + 12}" font-weight="bold">'
        f"{escape(_clip(box.title))}</text>"
    )
    for i, line in enumerate(_svg_lines(box), start=1):
        yield (
            f'<text x="{x + _PAD}" y="{y + _PAD + 12 + i * _LINE}" fill="#37474f">'
            f"{escape(line)}</text>"
        )
    yield "</g>"


def _clip(text: str, limit: int = 34) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
