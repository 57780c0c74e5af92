"""Record the histories the replay tests replay: ``python -m tests.record_histories``.

Runs the example sagas on a fresh embedded dev server against the demo participants — one
completed, one compensated, one cancelled during its timer, one parked on a failed compensation
and resolved — and writes each history to ``tests/histories/<name>.json``. Re-record only when
a change is *meant* to break running sagas; the replay tests exist to catch the other kind.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
from pathlib import Path
from typing import Any

import httpx

from sagaloom import Resolution, SagaState, SagaStatus, StepStatus
from sagaloom.client import outcome, start_saga
from sagaloom.server import free_port
from tests._helpers import order, trip
from workers.demo import environment
from workflows.order import ORDER
from workflows.trip import TRIP

OUT = Path(__file__).resolve().parent / "histories"


async def wait_until(handle: Any, check: Any) -> None:
    for _ in range(300):
        if check(await handle.query("saga_state", result_type=SagaState)):
            return
        await asyncio.sleep(0.1)
    raise RuntimeError("saga never reached the expected state")


async def main() -> None:
    OUT.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        address = f"127.0.0.1:{free_port()}"
        async with (
            environment(
                Path(tmp),
                address=address,
                ui_port=free_port(),
                nats_url=f"nats://127.0.0.1:{free_port()}",
            ) as env,
            httpx.AsyncClient() as http,
        ):
            urls, queue = env.services.urls, env.task_queue
            runs = {}
            runs["order-completed"] = await start_saga(
                env.client, ORDER, order("h-ok"), task_queue=queue
            )
            runs["order-compensated"] = await start_saga(
                env.client, ORDER, order("h-no-route", country="AQ"), task_queue=queue
            )
            runs["trip-completed"] = await start_saga(
                env.client, TRIP, trip("h-trip-ok"), task_queue=queue
            )
            runs["trip-compensated"] = await start_saga(
                env.client, TRIP, trip("h-trip-venice", destination="Venice"), task_queue=queue
            )
            cancelled = await start_saga(
                env.client, TRIP, trip("h-cancel", cooling_off_seconds=600), task_queue=queue
            )
            await wait_until(cancelled, lambda s: s.steps[2].status is StepStatus.RUNNING)
            await cancelled.cancel()
            runs["trip-cancelled"] = cancelled
            await http.post(
                f"{urls['payment']}/_admin/faults",
                json={
                    "op": "undo",
                    "match": "h-parked",
                    "mode": "reject",
                    "status": 409,
                    "times": 1,
                },
            )
            parked = await start_saga(
                env.client, ORDER, order("h-parked", country="AQ"), task_queue=queue
            )
            await wait_until(parked, lambda s: s.status is SagaStatus.NEEDS_ATTENTION)
            await parked.execute_update("resolve", Resolution(action="retry", note="recorded"))
            runs["order-parked-resolved"] = parked
            ids = {}
            for name, handle in runs.items():
                result = await outcome(handle)
                history = await handle.fetch_history()
                (OUT / f"{name}.json").write_text(history.to_json())
                ids[name] = handle.id  # a replay must run under the same workflow id
                print(f"{name}: {result.status.value}, {len(history.events)} events")
            (OUT / "workflow-ids.json").write_text(json.dumps(ids, indent=2) + "\n")


if __name__ == "__main__":
    asyncio.run(main())
