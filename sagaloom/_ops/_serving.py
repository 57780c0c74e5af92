"""The one way sagaloom serves HTTP (worker endpoint, codec server): aiohttp, bounded.

A connection that has not sent a whole request within ``idle`` seconds is closed (half-sent
headers included), header lines and counts are bounded, no access log, no signal handling (the
process owns its signals), and a waiting connection costs no thread.
"""

from __future__ import annotations

import ssl

from aiohttp import web

__all__ = ["serve"]


async def serve(
    app: web.Application,
    host: str,
    port: int,
    *,
    idle: float = 5.0,
    max_line: int = 4096,
    tls: ssl.SSLContext | None = None,
) -> web.AppRunner:
    """Start serving ``app`` on ``host:port``; stop with the returned runner's ``cleanup()``."""
    runner = web.AppRunner(
        app,
        access_log=None,
        handle_signals=False,
        keepalive_timeout=idle,
        max_line_size=max_line,
        max_field_size=max_line,
        max_headers=64,
        shutdown_timeout=1,
    )
    await runner.setup()
    await web.TCPSite(runner, host, port, ssl_context=tls).start()
    return runner
