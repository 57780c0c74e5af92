"""Drawings of sagas: the graph read from a definition, a run painted on it (no I/O)."""

from sagaloom._drawing._render import FORMATS, render, to_dot, to_mermaid, to_svg
from sagaloom._drawing._shapes import Box, Drawing, Paint, drawing_of, paint

__all__ = [
    "FORMATS",
    "Box",
    "Drawing",
    "Paint",
    "drawing_of",
    "paint",
    "render",
    "to_dot",
    "to_mermaid",
    "to_svg",
]
