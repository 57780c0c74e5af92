"""Record fan-out histories: ``python -m tests.record_fanout tests/histories``.

A tolerant fan-out that completed and undid a failed item at once, a fan-out compensated after
a later step failed (its items undone batch by batch), and one of its batch workflows: the
replay tests prove sagas running a ``ForEach`` step today still finish on tomorrow's code.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

from temporalio.worker import Worker

from sagaloom._runtime._items import ItemsWorkflow
from sagaloom._wire._names import items_batch_id
from sagaloom.client import connect, outcome, start_saga
from sagaloom.server import DevServer, DevServerOptions
from tests._fanout_sagas import FAN, FAN_SAGAS, TOLERANT
from tests._scripted import scripted


def _plan(*items: str, after: str = "ok") -> dict[str, Any]:
    rows = [{"id": f"i{n}", "do": do} for n, do in enumerate(items)]
    return {"run": uuid.uuid4().hex[:8], "items": rows, "after": after}


RUNS = {
    "fanout-tolerated": (TOLERANT, _plan("ok", "reject", "unavailable", "ok")),
    "fanout-compensated": (FAN, _plan("ok", "ok", "ok", "ok", "ok", after="reject")),
}


async def main(out: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        server = DevServer(DevServerOptions.in_folder(Path(tmp), ui=False))
        await server.start()
        try:
            client = await connect(server.address)
            ids = {}
            async with Worker(client, task_queue="fan", workflows=[*FAN_SAGAS, ItemsWorkflow],
                              activities=[scripted]):  # fmt: skip
                for name, (saga, data) in RUNS.items():
                    handle = await start_saga(client, saga, data, task_queue="fan")
                    print(name, (await outcome(handle)).status.value)
                    history = await handle.fetch_history()
                    (out / f"{name}.json").write_text(history.to_json())
                    ids[name] = handle.id
                batch = items_batch_id(ids["fanout-compensated"], "book", 1)
                first = [r async for r in client.list_workflows(f'WorkflowId = "{batch}"')]
                first.sort(key=lambda r: r.start_time)  # the batch that did the items
                history = await client.get_workflow_handle(
                    batch, run_id=first[0].run_id
                ).fetch_history()
                (out / "fanout-batch.json").write_text(history.to_json())
                ids["fanout-batch"] = batch
            (out / "fanout-ids.json").write_text(json.dumps(ids, indent=2) + "\n")
        finally:
            server.stop()


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1])))
