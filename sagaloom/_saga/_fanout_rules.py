"""Fan-out over a list: the wire models of an item batch, and the pure rules of its items.

A :class:`~sagaloom.ForEach` step runs its items in batch workflows (``sagaloom.Items``); the
saga builds each item's call (:class:`ItemCall`), a batch runs them and reports how each ended
(:class:`ItemResult`). Which items are undone, and whether the failures are tolerated, are
decided here, apart from any I/O (sandbox-safe).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field

__all__ = [
    "BatchResult",
    "ItemBatch",
    "ItemCall",
    "ItemCounts",
    "ItemResult",
    "ItemStatus",
    "RetrySpec",
    "batches",
    "counts",
    "may_have_taken_effect",
    "to_undo",
]


class ItemStatus(StrEnum):
    """How one item ended (forward, then its undo)."""

    NOT_STARTED = "not_started"
    """Never called: the fan-out stopped first (failures past ``tolerate``, a cancel)."""
    RUNNING = "running"
    """Its batch is still running (only ``saga show --items`` says so; no result holds it)."""
    DONE = "done"
    FAILED = "failed"
    """Timed out, out of retries, or answered unreadably: it may have taken effect."""
    REFUSED = "refused"
    """The participant said no (a non-retryable error): nothing took effect."""
    CANCELLED = "cancelled"
    """Cancelled while it ran: it may have taken effect."""
    UNDONE = "undone"
    """Its compensation ran."""
    UNDO_FAILED = "undo_failed"
    """Its compensation failed for good."""


class RetrySpec(BaseModel):
    """A retry policy on the wire (``temporalio.common.RetryPolicy``'s fields)."""

    initial_seconds: float = 1.0
    backoff: float = 2.0
    maximum_seconds: float | None = None
    maximum_attempts: int = 0
    non_retryable: list[str] = Field(default_factory=list)


class ItemCall(BaseModel):
    """One item's call, as the saga built it."""

    index: int
    key: str
    activity: str
    """The activity's registered name (the HTTP participant's, or the user's)."""
    args: list[Any] = Field(default_factory=list)
    http: bool = False
    """An HTTP call: its result is an ``HttpResponse`` whose body is the item's output."""
    summary: str = ""


class ItemBatch(BaseModel):
    """A batch of item calls for one ``sagaloom.Items`` workflow."""

    saga_id: str
    step: str
    undo: bool = False
    calls: list[ItemCall]
    max_concurrency: int = 10
    allowed_failures: int | None = None
    """Stop starting items once more than this many failed; None: run them all."""
    start_to_close_seconds: float = 30.0
    schedule_to_close_seconds: float | None = None
    heartbeat_seconds: float | None = None
    retry: RetrySpec = Field(default_factory=RetrySpec)
    total: int = 0
    """Items in the whole fan-out (for the batch's summary)."""
    output_budget: int | None = 1_000_000
    """Most bytes (as JSON) of the batch's item outputs; None: no budget (the saga's payloads
    go to a store, so a large result is stored, not refused by Temporal)."""


class ItemResult(BaseModel):
    """How one item's call (or its undo) ended."""

    index: int
    key: str
    status: ItemStatus = ItemStatus.NOT_STARTED
    output: Any = None
    error: str | None = None
    attempts: int = 0


class BatchResult(BaseModel):
    """A batch's items, in the order of its calls."""

    items: list[ItemResult] = Field(default_factory=list)
    most_running: int = 0
    """Most items that ran at once in the batch (measured by the batch itself)."""


class ItemCounts(BaseModel):
    """A fan-out step's progress, in its step table (``done / failed / running of total``)."""

    total: int = 0
    done: int = 0
    failed: int = 0
    """Failed or refused (``failures`` names them)."""
    running: int = 0
    undone: int = 0
    failures: list[str] = Field(default_factory=list)
    """``<item key>: <error>`` of the first failures (at most 20; ``saga show --items`` lists
    them all)."""


_MAY_HAVE_RUN = frozenset({ItemStatus.DONE, ItemStatus.FAILED, ItemStatus.CANCELLED})


def may_have_taken_effect(status: ItemStatus) -> bool:
    """Whether an item's forward call took or may have taken effect (so it is undone)."""
    return status in _MAY_HAVE_RUN


def to_undo(items: Iterable[ItemResult], undone: set[int]) -> list[int]:
    """The indexes of the items to compensate, in reverse order.

    Every item that took or may have taken effect and is not undone yet; never a refused or a
    never-started item.
    """
    found = [r.index for r in items if may_have_taken_effect(r.status) and r.index not in undone]
    return sorted(found, reverse=True)


def batches(total: int, size: int) -> list[range]:
    """The index ranges of the batches of a fan-out of ``total`` items."""
    return [range(start, min(start + size, total)) for start in range(0, total, size)]


def counts(items: Sequence[ItemResult], total: int, undone: int) -> ItemCounts:
    """A fan-out's progress from its items' results so far."""
    failed = [r for r in items if r.status in (ItemStatus.FAILED, ItemStatus.REFUSED)]
    return ItemCounts(
        total=total,
        done=sum(r.status is ItemStatus.DONE for r in items),
        failed=len(failed),
        undone=undone,
        failures=[f"{r.key}: {r.error}" for r in failed[:20]],
    )
