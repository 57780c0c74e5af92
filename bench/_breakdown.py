"""Where the server's work goes, per saga: history events, bytes and visibility writes.

One completed and one compensated saga of each variant, read back from history. Visibility
writes counted as the server makes them: the record at start, one per search-attribute upsert,
and the record at close.
"""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import dataclass

from temporalio.client import Client

from bench._inprocess import BREAKDOWN, VARIANTS, worker_for
from bench._models import BenchInput

__all__ = ["Breakdown", "breakdown", "breakdown_table"]


@dataclass(frozen=True)
class Breakdown:
    """One saga's history, summarised."""

    variant: str
    outcome: str
    events: int
    history_bytes: int
    visibility_writes: int
    counts: Counter[str]


async def breakdown(client: Client) -> list[Breakdown]:
    """A completed and a compensated saga of every variant, each summarised."""
    rows: list[Breakdown] = []
    for name in BREAKDOWN:
        one = VARIANTS[name].one
        queue = f"breakdown-{uuid.uuid4().hex[:8]}"
        async with worker_for(client, name, queue):
            for fail_at, outcome in ((0, "completed"), (4, "compensated")):
                data = BenchInput(id=uuid.uuid4().hex[:12], fail_at=fail_at)
                await one(client, queue, data)
                [execution] = [
                    e async for e in client.list_workflows(f'TaskQueue = "{queue}"', limit=1)
                ]
                events = (await client.get_workflow_handle(execution.id).fetch_history()).events
                kinds = Counter(
                    (e.WhichOneof("attributes") or "").removesuffix("_event_attributes")
                    for e in events
                )
                rows.append(
                    Breakdown(
                        name,
                        outcome,
                        len(events),
                        sum(e.ByteSize() for e in events),
                        2 + kinds["upsert_workflow_search_attributes"],
                        kinds,
                    )
                )
    return rows


def breakdown_table(rows: list[Breakdown]) -> list[str]:
    """Markdown rows."""
    lines = [
        "| variant | saga | history events | history bytes | workflow tasks | activities "
        "| local-activity markers | search-attribute upserts | visibility writes |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        c = r.counts
        lines.append(
            f"| {r.variant} | {r.outcome} | {r.events} | {r.history_bytes} "
            f"| {c['workflow_task_scheduled']} | {c['activity_task_scheduled']} "
            f"| {c['marker_recorded']} | {c['upsert_workflow_search_attributes']} "
            f"| {r.visibility_writes} |"
        )
    return lines
