"""An activity whose build 1 has a bug that build 2 fixes (``VERSIONED_BUG`` set on build 1)."""

from __future__ import annotations

import os

from temporalio import activity


@activity.defn(name="versioned.check")
async def check(order_id: str) -> dict[str, str]:
    """Build 1 raises (a bug); build 2 answers."""
    if os.environ.get("VERSIONED_BUG"):
        raise RuntimeError(f"bug in build 1 checking {order_id}")
    return {"checked": order_id}
