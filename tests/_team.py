"""A team's own Temporal code, which adding sagaloom must leave working.

Checked by tests/worker/test_plugin.py.

Kept in a module of its own: the workflow sandbox re-imports it.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import activity, workflow


@activity.defn
async def greet(name: str) -> str:
    """The team's own activity."""
    return f"hello {name}"


@workflow.defn
class GreetWorkflow:
    """The team's own hand-written workflow."""

    @workflow.run
    async def run(self, name: str) -> str:
        """Call the team's activity."""
        return await workflow.execute_activity(
            greet, name, start_to_close_timeout=timedelta(seconds=10)
        )
