"""``saga upgrade-check``: may the workers move to release X with the sagas running now?"""

from __future__ import annotations

import argparse
import json
from typing import Any

from temporalio.client import Client

from sagaloom._cli._common import CliError, add_command, client, connection_flags
from sagaloom._wire._names import SAGA_NAME, SAGALOOM_VERSION
from sagaloom._wire._release import (
    PRE_RELEASE,
    RELEASES,
    VERSION,
    Blocker,
    UnknownRelease,
    blockers,
    release,
)

__all__ = ["register"]

_RUNNING = f'ExecutionStatus = "Running" AND {SAGA_NAME.name} IS NOT NULL'
_KEY = SAGALOOM_VERSION.name


async def running_by_version(temporal: Client) -> list[tuple[str | None, int]]:
    """How many sagas run now, by the release that started them (None: none recorded).

    Counted by the server (visibility), one count per known release, plus those with no
    version and those with a version this build does not know (a newer one).
    """
    counts: list[tuple[str | None, int]] = []
    for known in RELEASES:
        found = await temporal.count_workflows(f'{_RUNNING} AND {_KEY} = "{known.version}"')
        counts.append((known.version, found.count))
    none = await temporal.count_workflows(f"{_RUNNING} AND {_KEY} IS NULL")
    counts.append((None, none.count))
    known_list = ", ".join(f'"{r.version}"' for r in RELEASES)
    others = f"{_RUNNING} AND {_KEY} IS NOT NULL AND {_KEY} NOT IN ({known_list})"
    newer: dict[str, int] = {}
    async for execution in temporal.list_workflows(others):
        version = execution.typed_search_attributes.get(SAGALOOM_VERSION) or "?"
        newer[version] = newer.get(version, 0) + 1
    counts.extend(sorted(newer.items()))
    return counts


async def cmd_upgrade_check(args: argparse.Namespace) -> int:
    """Count the running sagas the target release cannot replay; exit 1 when there are any."""
    try:
        target = release(args.to or VERSION)
    except UnknownRelease as err:
        raise CliError(str(err)) from None
    counts = await running_by_version(await client(args))
    blocked = blockers(target, counts)
    if args.json:
        print(json.dumps(_report(target.version, counts, blocked), indent=2))
        return 1 if blocked else 0
    lines = ", ".join(str(n) for n in target.replays)
    print(f"upgrade to sagaloom {target.version}: it replays the runs of line(s) {lines}")
    print(f"{'started by':<14} {'running':>8}  verdict")
    stopping = {b.version for b in blocked}
    for version, count in counts:
        name = version or PRE_RELEASE
        if count:
            verdict = "cannot replay: drain, or pin" if name in stopping else "ok"
            print(f"{name:<14} {count:>8}  {verdict}")
    if not any(count for _, count in counts):
        print("(no saga is running)")
    if not blocked:
        print(f"ok: every running saga replays on sagaloom {target.version}")
        return 0
    total = sum(b.count for b in blocked)
    names = ", ".join(b.version for b in blocked)
    print(
        f"not yet: {total} running saga(s) started by sagaloom {names} need branches "
        f"{target.version} drops. Drain them (let them finish on workers of the build that "
        "started them), or keep them on a pinned worker build of that release while new "
        "sagas start on the new one; then upgrade (docs/upgrading.md)."
    )
    return 1


def _report(
    target: str, counts: list[tuple[str | None, int]], blocked: list[Blocker]
) -> dict[str, Any]:
    return {
        "to": target,
        "running": {version or PRE_RELEASE: count for version, count in counts if count},
        "blocked": [{"version": b.version, "count": b.count, "known": b.known} for b in blocked],
        "ok": not blocked,
    }


def register(sub: Any) -> None:
    """Add this group's commands."""
    p = add_command(
        sub,
        "upgrade-check",
        cmd_upgrade_check,
        "count the running sagas a release cannot replay (exit 1 while there are any)",
        "saga upgrade-check --to 0.1.0   (or: --json)",
    )
    connection_flags(p)
    p.add_argument(
        "--to",
        metavar="VERSION",
        help=f"the release to upgrade to (default: this one, {VERSION}); one of: "
        + ", ".join(r.version for r in RELEASES),
    )
    p.add_argument("--json", action="store_true", help="as JSON")
