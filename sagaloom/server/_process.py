"""Child server processes (the embedded Temporal dev server, nats-server): spawn and stop."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path

__all__ = ["spawn", "stop"]


def spawn(command: Sequence[str], log_file: Path | None) -> subprocess.Popen[bytes]:
    """Start ``command`` in its own session, its output appended to ``log_file`` (or dropped)."""
    out = open(log_file, "ab") if log_file else subprocess.DEVNULL  # noqa: SIM115
    return subprocess.Popen(
        list(command), stdout=out, stderr=subprocess.STDOUT, start_new_session=True
    )


def stop(process: subprocess.Popen[bytes] | None, timeout: float) -> None:
    """Stop ``process`` if it runs: SIGTERM, then SIGKILL after ``timeout`` seconds."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
