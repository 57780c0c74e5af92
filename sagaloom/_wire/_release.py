"""The release line: this build's version, the releases so far, and whose runs each replays.

A saga runs for minutes or months; a worker that replays its history must take the branches
its first worker took. sagaloom keeps that promise by release, not forever (docs/upgrading.md):

* every run records the **line** of the build that started it, as a patch marker written by its
  first workflow task (``sagaloom-line-<n>``), and its engine **version** in the search
  attribute ``SagaloomVersion``, which ``saga upgrade-check`` counts;
* an engine change that alters what a running saga does is written
  ``if workflow.patched(id)`` in the release that makes it; the release that next starts a line
  drops every branch the older line needed, and replays the runs of the lines listed in its
  :attr:`Release.replays` only;
* a worker asked to replay a run of a line it no longer replays stops that run's workflow task
  with :class:`UnsupportedRun`, naming the release to run it on, and the run waits, unharmed,
  for a worker of that build (never a silent wrong branch).

Pure data and functions: sandbox-safe, no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

__all__ = [
    "CURRENT",
    "PRE_RELEASE",
    "RELEASES",
    "VERSION",
    "Blocker",
    "Release",
    "UnknownRelease",
    "UnsupportedRun",
    "blockers",
    "line_marker",
    "release",
]

VERSION = "0.1.0"
"""This build's version: the one place it is written (``pyproject.toml`` reads it)."""

PRE_RELEASE = "pre-0.1.0"
"""How a run that recorded no version is named: started by a development build before 0.1.0."""


@dataclass(frozen=True)
class Release:
    """A release of the engine, as the release line sees it.

    Attributes:
        version: its version, ``MAJOR.MINOR.PATCH``.
        date: the day it was cut (``YYYY-MM-DD``).
        line: the branch set its runs record (``sagaloom-line-<line>``); a release starts a new
            line when it drops branches.
        replays: the lines whose runs its workers replay, its own first.
    """

    version: str
    date: str
    line: int
    replays: tuple[int, ...]


RELEASES: tuple[Release, ...] = (
    # The first release: the development builds' 19 patch branches are gone (line 0, the runs
    # that recorded no version, is not replayed: finish them on the build that started them).
    Release("0.1.0", "2026-12-06", line=1, replays=(1,)),
)
"""Every release, oldest first."""


class UnknownRelease(ValueError):
    """A version the release table does not hold."""

    def __init__(self, version: str) -> None:
        known = ", ".join(r.version for r in RELEASES)
        super().__init__(f"unknown sagaloom release {version!r} (known: {known})")
        self.version = version


def release(version: str) -> Release:
    """The release of ``version``.

    Raises:
        UnknownRelease: no release has that version.
    """
    for candidate in RELEASES:
        if candidate.version == version:
            return candidate
    raise UnknownRelease(version)


CURRENT: Release = release(VERSION)
"""This build's release."""


def line_marker(line: int) -> str:
    """The patch marker id a run of ``line`` records at its start."""
    return f"sagaloom-line-{line}"


class UnsupportedRun(RuntimeError):
    """A run started by a release whose branches this build no longer has.

    Raised in the run's workflow task (never as the run's failure): Temporal retries the task,
    and the run waits, unharmed, for a worker of a build that replays it.
    """

    def __init__(self, workflow_id: str, started_by: str, *, build: str = VERSION) -> None:
        super().__init__(
            f"run {workflow_id} was started by sagaloom {started_by}, whose branches "
            f"sagaloom {build} no longer has: run it to its end on a worker of sagaloom "
            f"{started_by} (a pinned build, or that build's task queue), then upgrade "
            "(docs/upgrading.md; `saga upgrade-check --to VERSION` counts such runs)"
        )
        self.workflow_id = workflow_id
        self.started_by = started_by


@dataclass(frozen=True)
class Blocker:
    """Running sagas that a target release cannot replay.

    Attributes:
        version: the release that started them (:data:`PRE_RELEASE` when none was recorded).
        count: how many run.
        known: whether the release table holds ``version`` (a newer build's runs are not).
    """

    version: str
    count: int
    known: bool = True


def blockers(target: Release, running: Iterable[tuple[str | None, int]]) -> list[Blocker]:
    """Which of the running sagas ``target`` cannot replay.

    Args:
        target: the release to upgrade to.
        running: ``(version, count)`` per version the running sagas recorded (``None``: none).

    Returns:
        A :class:`Blocker` per version whose line ``target`` does not replay, oldest first; an
        unknown version (newer than this table) blocks, as its line cannot be checked.
    """
    found: list[Blocker] = []
    for version, count in running:
        if count <= 0:
            continue
        if version is None:
            if 0 not in target.replays:
                found.append(Blocker(PRE_RELEASE, count))
            continue
        try:
            line = release(version).line
        except UnknownRelease:
            found.append(Blocker(version, count, known=False))
            continue
        if line not in target.replays:
            found.append(Blocker(version, count))
    order = {r.version: i for i, r in enumerate(RELEASES)}
    return sorted(found, key=lambda b: order.get(b.version, -1 if b.known else len(order)))
