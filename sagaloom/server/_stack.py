"""``saga dev``: the embedded Temporal dev server and a worker for the sagas named, until Ctrl-C."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

from sagaloom.client._runs import connect
from sagaloom.client._search_attributes import ensure_search_attributes
from sagaloom.server._nats_server import NatsServer, NatsServerOptions
from sagaloom.server._temporal import DevServer, DevServerOptions, port_open
from sagaloom.worker._config import WorkerConfig
from sagaloom.worker._registry import load_sagas
from sagaloom.worker._run import run_worker

__all__ = ["DEFAULT_NATS_URL", "UI_FILE", "embedded_broker", "embedded_server", "run_dev"]

UI_FILE = "ui-url"
"""File in the data folder where a running embedded server notes its Web UI's URL."""
DEFAULT_NATS_URL = "nats://127.0.0.1:4222"
"""Where ``saga dev`` runs (or finds) the broker."""


@contextlib.asynccontextmanager
async def embedded_broker(
    data_dir: Path, url: str = DEFAULT_NATS_URL, *, say: bool = True
) -> AsyncIterator[NatsServer | None]:
    """The NATS JetStream server at ``url``: the one running there, or an embedded one.

    Yields:
        The embedded server when this process started it, else None.
    """
    host, port = url.removeprefix("nats://").rsplit(":", 1)
    if port_open(host, int(port)):
        if say:
            print(f"using the NATS server already running at {url}")
        yield None
        return
    server = NatsServer(
        NatsServerOptions(
            store_dir=data_dir / "jetstream",
            ip=host,
            port=int(port),
            log_file=data_dir / "nats.log",
        )
    )
    if say:
        print(
            f"starting the embedded NATS JetStream server on {url} (store {data_dir / 'jetstream'})"
        )
    await server.start()
    try:
        yield server
    finally:
        server.stop()


@contextlib.asynccontextmanager
async def embedded_server(
    data_dir: Path, address: str, *, ui_port: int = 8233, say: bool = True
) -> AsyncIterator[DevServer | None]:
    """The Temporal server at ``address``: the one running there, or the embedded default.

    Yields:
        The embedded server when this process started it, else None.
    """
    host, port = address.rsplit(":", 1)
    if port_open(host, int(port)):
        if say:
            print(f"using the Temporal server already running at {address}")
        client = await connect(address)
        await ensure_search_attributes(client)
        yield None
        return
    server = DevServer(
        DevServerOptions(
            ip=host,
            port=int(port),
            ui_port=ui_port,
            db_file=data_dir / "temporal.sqlite3",
            log_file=data_dir / "temporal.log",
        )
    )
    if say:
        print(
            f"starting the embedded Temporal dev server on {address} "
            f"(SQLite {data_dir / 'temporal.sqlite3'}, WAL + synchronous=normal)"
        )
    await server.start()
    ui_file = data_dir / UI_FILE
    if server.ui_url:  # so `saga start`/`show` run from here link to this UI, wherever it is
        ui_file.write_text(server.ui_url + "\n")
    try:
        yield server
    finally:
        server.stop()
        ui_file.unlink(missing_ok=True)


async def run_dev(data_dir: Path, config: WorkerConfig, *, ui_port: int = 8233) -> int:
    """Run the server (and a worker when ``config`` names saga modules) until SIGINT/SIGTERM."""
    sagas = load_sagas(config.saga_modules)  # a bad module fails before anything starts
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    nats_url = config.nats_url or DEFAULT_NATS_URL
    async with (
        embedded_server(data_dir, config.address, ui_port=ui_port) as server,
        embedded_broker(data_dir, nats_url),
    ):
        config = replace(config, nats_url=nats_url)
        ui = server.ui_url if server is not None else None
        print(f"Temporal at {config.address}" + (f"; Web UI {ui}" if ui else ""))
        print(f"NATS JetStream at {nats_url} (commands, replies, lifecycle events)")
        worker = None
        if sagas:
            print(f"worker for {', '.join(sorted(sagas))} on task queue {config.task_queue!r}")
            worker = asyncio.create_task(run_worker(replace(config), stop))
        else:
            print("no --module named: no worker runs here (start yours with `saga worker`)")
        print("Ctrl-C stops everything.")
        await stop.wait()
        print("stopping…")
        if worker is not None:
            await worker
    return 0
