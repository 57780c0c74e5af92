"""Where a run's drawing is served, for the link on its Web UI page (set by the worker).

The plugin sets :data:`LINKS` from ``SAGALOOM_DRAWINGS_URL`` (the codec server that draws runs,
``saga codec-server``). Only the live details read it: they are served from the worker's
memory by a query, never written to history, so the URL can change between workers without a
replay noticing.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

__all__ = ["LINKS", "Links"]


@dataclass
class Links:
    """The base URL of the drawings (None: no link)."""

    drawings: str | None = None

    def drawing(self, workflow_id: str) -> str | None:
        """The URL of the run's drawing page, or None when no drawings URL is set."""
        if not self.drawings:
            return None
        return f"{self.drawings.rstrip('/')}/sagas/{quote(workflow_id, safe='')}/graph"


LINKS = Links()
"""This worker process's links (one drawings URL per process)."""
