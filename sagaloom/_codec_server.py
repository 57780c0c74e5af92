"""``saga codec-server``: the Web UI's remote codec endpoint, so encrypted payloads read as JSON.

Serves ``POST /decode`` and ``POST /encode`` with ``{"payloads": [...]}`` bodies (Temporal's
codec-server protocol). Point the UI at it: ``temporal server start-dev --ui-codec-endpoint
http://localhost:8888`` or the UI's "Codec Server" setting. Keep it on loopback or behind
authentication: it decrypts whatever it is sent.
"""

from __future__ import annotations

import asyncio
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from google.protobuf import json_format
from temporalio.api.common.v1 import Payloads
from temporalio.converter import PayloadCodec

__all__ = ["codec_server"]


def codec_server(codec: PayloadCodec, host: str, port: int, origin: str) -> ThreadingHTTPServer:
    """A server (not yet serving) that runs ``codec`` for the Web UI at ``origin``."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            """Quiet."""

        def _cors(self) -> None:
            self.send_header("Access-Control-Allow-Origin", origin)
            self.send_header("Access-Control-Allow-Methods", "POST, OPTIONS")
            self.send_header(
                "Access-Control-Allow-Headers", "Content-Type, X-Namespace, Authorization"
            )
            self.send_header("Access-Control-Allow-Credentials", "true")

        def do_OPTIONS(self) -> None:
            self.send_response(204)
            self._cors()
            self.end_headers()

        def do_POST(self) -> None:
            if self.path not in ("/encode", "/decode"):
                self.send_error(404)
                return
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            try:
                payloads = json_format.Parse(body, Payloads())
                run = codec.encode if self.path == "/encode" else codec.decode
                result = asyncio.run(run(list(payloads.payloads)))
            except Exception as err:  # a bad request or a payload it cannot decrypt
                self.send_response(400)
                self._cors()
                self.end_headers()
                self.wfile.write(str(err).encode())
                return
            data = json_format.MessageToJson(Payloads(payloads=result)).encode()
            self.send_response(200)
            self._cors()
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return ThreadingHTTPServer((host, port), Handler)
