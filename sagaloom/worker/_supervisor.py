"""``saga worker --processes N``: N worker processes on one host, restarted if they die.

The supervisor passes each child its configuration through the environment (metrics and health
ports offset by the child's index), restarts a child that exits unexpectedly (back-off 1 s,
doubling to 30 s), and on SIGTERM/SIGINT forwards SIGTERM to all children, waits out their
graceful shutdown and kills what is left.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field

from sagaloom.worker._config import WorkerConfig

__all__ = ["Supervisor"]

log = logging.getLogger("sagaloom.supervisor")


def _offset(address: str | None, index: int) -> str | None:
    if address is None:
        return None
    host, _, port = address.rpartition(":")
    return f"{host}:{int(port) + index}"


@dataclass
class _Child:
    index: int
    process: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    backoff: float = 1.0
    restart_at: float = 0.0
    restarts: int = 0
    env: dict[str, str] = field(default_factory=dict)


class Supervisor:
    """Runs and watches the worker processes of one host."""

    def __init__(self, config: WorkerConfig) -> None:
        """Prepare ``config.processes`` children of ``config`` (not started)."""
        self._config = config
        self._stopping = False
        self._children = [_Child(i) for i in range(config.processes)]
        for child in self._children:
            child_config = dataclasses.replace(
                config,
                processes=1,
                metrics_address=_offset(config.metrics_address, child.index),
                health_address=_offset(config.health_address, child.index),
            )
            child.env = {**os.environ, **child_config.to_env()}

    def _start(self, child: _Child) -> None:
        child.process = subprocess.Popen(
            [sys.executable, "-m", "sagaloom", "worker"], env=child.env, start_new_session=False
        )
        child.started = time.monotonic()
        log.info("worker process %d started (pid %d)", child.index, child.process.pid)

    def _stop(self, *_: object) -> None:
        self._stopping = True

    def run(self) -> int:
        """Run until SIGTERM/SIGINT; return 0 when every child stopped cleanly."""
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        for child in self._children:
            self._start(child)
        while not self._stopping:
            time.sleep(0.2)
            now = time.monotonic()
            for child in self._children:
                if child.process is None:
                    if now >= child.restart_at:
                        self._start(child)
                    continue
                code = child.process.poll()
                if code is None:
                    if now - child.started > 60:
                        child.backoff = 1.0  # healthy for a minute: reset the back-off
                    continue
                child.restarts += 1
                log.warning(
                    "worker process %d (pid %d) exited with %s; restarting in %.0fs",
                    child.index,
                    child.process.pid,
                    code,
                    child.backoff,
                )
                child.process, child.restart_at = None, now + child.backoff
                child.backoff = min(child.backoff * 2, 30.0)
        return self._shutdown()

    def _shutdown(self) -> int:
        running = [c.process for c in self._children if c.process and c.process.poll() is None]
        log.info("stopping %d worker process(es)", len(running))
        for process in running:
            process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self._config.graceful_shutdown.total_seconds() + 5
        for process in running:
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("worker pid %d did not stop in time: killing it", process.pid)
                process.kill()
                process.wait()
        return 0 if all(p.returncode == 0 for p in running) else 1
