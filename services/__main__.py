"""Run the demo participants until SIGTERM/SIGINT: ``python -m services --data-dir DIR``.

Prints one JSON line ``{"inventory": "http://127.0.0.1:PORT", ...}`` once every server listens,
and writes the same to ``--urls-file`` when given.
"""

from __future__ import annotations

import argparse
import json
import signal
import threading
from pathlib import Path

from services._catalog import CATALOG
from services._server import serve


def main() -> None:
    """Parse arguments, serve, and stop cleanly on a signal."""
    parser = argparse.ArgumentParser(prog="python -m services", description=__doc__)
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--urls-file", type=Path)
    parser.add_argument(
        "--base-port", type=int, default=0, help="ports N, N+1, … in catalog order (0: free ports)"
    )
    parser.add_argument(
        "--reply-url", action="append", default=[], help="the engine's reply endpoint(s)"
    )
    parser.add_argument("--nats", metavar="URL", help="also run the warehouse, over NATS")
    args = parser.parse_args()
    ports = (
        {spec.name: args.base_port + i for i, spec in enumerate(CATALOG)} if args.base_port else {}
    )
    running = serve(
        args.data_dir,
        host=args.host,
        ports=ports,
        reply_urls=tuple(args.reply_url),
        nats_url=args.nats,
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    line = json.dumps(running.urls)
    if args.urls_file:
        tmp = args.urls_file.with_suffix(".tmp")
        tmp.write_text(line)
        tmp.replace(args.urls_file)
    print(line, flush=True)
    stop.wait()
    running.close()


if __name__ == "__main__":
    main()
