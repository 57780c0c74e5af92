"""The fan-out written by hand with the raw SDK, as a team would without sagaloom.

Reserve every item (50 at a time), then the step that may fail; on a failure release what was
reserved and fail: the shape of ``bench._fan``'s saga in one workflow, without batches.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from bench._fan import FanInput, finish, reserve, unreserve

__all__ = ["RawFanSaga"]

_RETRY = RetryPolicy(maximum_attempts=3, initial_interval=timedelta(milliseconds=100))
_TIMEOUT = timedelta(seconds=30)


@workflow.defn(name="RawFanSaga")
class RawFanSaga:
    """Reserve each item, finish; undo every reservation when finishing fails."""

    @workflow.run
    async def run(self, data: FanInput) -> dict[str, Any]:
        """Fan out, then the last step; compensate on its failure."""
        gate = asyncio.Semaphore(50)
        refs: list[str] = []

        async def one(item: str) -> None:
            async with gate:
                out = await workflow.execute_activity(
                    reserve, item, start_to_close_timeout=_TIMEOUT, retry_policy=_RETRY
                )
                refs.append(out["ref"])

        async def undo(ref: str) -> None:
            async with gate:
                await workflow.execute_activity(unreserve, ref, start_to_close_timeout=_TIMEOUT)

        await asyncio.gather(*(one(f"{data.id}-{n}") for n in range(data.items)))
        try:
            await workflow.execute_activity(
                finish, data.fail, start_to_close_timeout=_TIMEOUT, retry_policy=_RETRY
            )
        except ActivityError as err:
            await asyncio.gather(*(undo(ref) for ref in refs))
            raise ApplicationError("compensated", type="SagaCompensated") from err
        return {"reserved": len(refs)}
