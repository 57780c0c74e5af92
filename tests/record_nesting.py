"""Record nested-saga histories: ``python -m tests.record_nesting tests/histories``.

The committed ones were recorded before the parent/child signals got readable names (they
carry ``parent`` and ``child_done``): the replay tests prove sagas started then still finish.
"""
import asyncio, json, sys, tempfile, uuid
from pathlib import Path
from temporalio.worker import Worker
from sagaloom.client import connect, outcome, start_saga
from sagaloom.server import DevServer, DevServerOptions
from tests._sagas import NESTING, NestingSaga, Rules2Saga
from tests._scripted import scripted

async def main(out: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        server = DevServer(DevServerOptions.in_folder(Path(tmp), ui=False))
        await server.start()
        try:
            client = await connect(server.address)
            ids = {}
            async with Worker(client, task_queue="nesting", workflows=[NestingSaga, Rules2Saga], activities=[scripted]):
                for name, steps in [("nesting-completed", {}), ("nesting-compensated", {"p2": "reject"})]:
                    h = await start_saga(client, NESTING, {"run": uuid.uuid4().hex[:8], "steps": steps}, task_queue="nesting")
                    r = await outcome(h)
                    hist = await h.fetch_history()
                    (out / f"{name}.json").write_text(hist.to_json())
                    ids[name] = h.id
                    child = client.get_workflow_handle(f"{h.id}:trip")
                    ch = await child.fetch_history()
                    (out / f"{name}-child.json").write_text(ch.to_json())
                    ids[name + "-child"] = child.id
                    print(name, r.status, len(hist.events))
            (out / "nesting-ids.json").write_text(json.dumps(ids, indent=2) + "\n")
        finally:
            server.stop()

asyncio.run(main(Path(sys.argv[1])))
