"""Record nested-saga histories: ``python -m tests.record_nesting tests/histories``.

The committed ones were recorded before the parent/child signals got readable names (they
carry ``parent`` and ``child_done``): the replay tests prove sagas started then still finish.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import uuid
from pathlib import Path

from temporalio.worker import Worker

from sagaloom.client import connect, outcome, start_saga
from sagaloom.server import DevServer, DevServerOptions
from tests._sagas import NESTING, NestingSaga, Rules2Saga
from tests._scripted import scripted

RUNS = {"nesting-completed": {}, "nesting-compensated": {"p2": "reject"}}


async def main(out: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        server = DevServer(DevServerOptions.in_folder(Path(tmp), ui=False))
        await server.start()
        try:
            client = await connect(server.address)
            ids = {}
            workflows = [NestingSaga, Rules2Saga]
            async with Worker(
                client, task_queue="nesting", workflows=workflows, activities=[scripted]
            ):
                for name, steps in RUNS.items():
                    data = {"run": uuid.uuid4().hex[:8], "steps": steps}
                    handle = await start_saga(client, NESTING, data, task_queue="nesting")
                    print(name, (await outcome(handle)).status.value)
                    for suffix, run in (("", handle.id), ("-child", f"{handle.id}:trip")):
                        history = await client.get_workflow_handle(run).fetch_history()
                        (out / f"{name}{suffix}.json").write_text(history.to_json())
                        ids[name + suffix] = run
            (out / "nesting-ids.json").write_text(json.dumps(ids, indent=2) + "\n")
        finally:
            server.stop()


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1])))
