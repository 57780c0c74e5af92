"""The release line a run follows: recorded by a new run, checked by a replayed one."""

from __future__ import annotations

from temporalio import workflow

from sagaloom._wire._names import SAGALOOM_VERSION
from sagaloom._wire._release import CURRENT, PRE_RELEASE, UnsupportedRun, line_marker

__all__ = ["check_release_line"]


def check_release_line() -> None:
    """Record the run's release line, or refuse a run of a line this build no longer replays.

    Called first thing by the engine's workflows that carry branches (sagas, breakers). A new
    run records this build's line (one patch marker, its first command); a replayed run finds
    its own. A run of no line this build replays (a development build's before 0.1.0, or a
    line dropped since) stops here, before any command, with :class:`UnsupportedRun`: its
    workflow task fails and is retried, and the run waits for a worker that can replay it.

    Raises:
        UnsupportedRun: the run's history holds none of the lines this build replays.
    """
    for line in CURRENT.replays:  # this build's own line first: a new run writes only it
        if workflow.patched(line_marker(line)):
            return
    info = workflow.info()
    raise UnsupportedRun(
        info.workflow_id, info.typed_search_attributes.get(SAGALOOM_VERSION) or PRE_RELEASE
    )
