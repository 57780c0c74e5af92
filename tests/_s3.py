"""An S3-compatible server for the tests: moto's server mode, on loopback, on a free port."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sagaloom.server import free_port

CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "sagaloom-test",
    "AWS_SECRET_ACCESS_KEY": "sagaloom-test",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
}
"""What moto takes (any key); the workers and the test's clients get the same."""


@contextmanager
def s3_server(folder: Path) -> Iterator[str]:
    """Run moto's S3 server until the block ends; yield its endpoint URL."""
    port = free_port()
    with open(folder / "moto.log", "ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"moto did not start; see {folder / 'moto.log'}") from None
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(10)
