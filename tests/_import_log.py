"""Where saga modules under test note each time they are imported (passed through the sandbox
by the tests that read it, so one list sees the imports made inside the sandbox too)."""

from __future__ import annotations

IMPORTS: list[str] = []
