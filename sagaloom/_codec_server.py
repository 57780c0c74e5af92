"""``saga codec-server``: the Web UI's remote codec endpoint, so encrypted payloads read as JSON.

Serves ``POST /decode`` and ``POST /encode`` with ``{"payloads": [...]}`` bodies (Temporal's
codec-server protocol). It decrypts whatever it is sent, so every request must carry
``Authorization: Bearer <token>`` (``SAGALOOM_CODEC_TOKEN``; the UI sends it when its codec
setting passes an access token), bodies are bounded, and a non-loopback address needs TLS or an
explicit ``--allow-plaintext``.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import ssl
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from google.protobuf import json_format
from temporalio.api.common.v1 import Payloads
from temporalio.converter import PayloadCodec

__all__ = ["MAX_CODEC_BODY", "CodecServerError", "codec_server", "is_loopback"]

MAX_CODEC_BODY = 8 * 1024 * 1024
"""Largest request body (a workflow task's payloads fit well within)."""


class CodecServerError(ValueError):
    """The codec server was asked to run in a way that would expose it."""


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address or ``localhost``."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def codec_server(
    codec: PayloadCodec,
    host: str,
    port: int,
    origin: str,
    *,
    token: str | None,
    tls: ssl.SSLContext | None = None,
    allow_plaintext: bool = False,
) -> ThreadingHTTPServer:
    """A server (not yet serving) that runs ``codec`` for the Web UI at ``origin``.

    Args:
        codec: The payload codec (the workers' keys).
        host: Address to bind.
        port: Port to bind.
        origin: The Web UI's origin (CORS).
        token: The bearer token every request must carry; None only on loopback (no auth).
        tls: Serve HTTPS with this context.
        allow_plaintext: Allow a non-loopback address without TLS.

    Raises:
        CodecServerError: no token off loopback, or plaintext off loopback without the flag.
    """
    if not is_loopback(host):
        if token is None:
            raise CodecServerError(f"{host} is not loopback: a token is required")
        if tls is None and not allow_plaintext:
            raise CodecServerError(
                f"{host} is not loopback: serve TLS (--tls-cert, --tls-key) or pass "
                "--allow-plaintext"
            )
    expected = f"Bearer {token}".encode() if token is not None else None

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

        def _answer(self, status: int, body: bytes, kind: str = "text/plain") -> None:
            self.send_response(status)
            self._cors()
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_OPTIONS(self) -> None:
            self.send_response(204)
            self._cors()
            self.end_headers()

        def do_POST(self) -> None:
            if self.path not in ("/encode", "/decode"):
                self._answer(404, b"not found")
                return
            given = (self.headers.get("Authorization") or "").encode()
            if expected is not None and not hmac.compare_digest(given, expected):
                self._answer(401, b"missing or wrong bearer token")
                return
            raw_length = self.headers.get("Content-Length") or ""
            if not raw_length.isdigit():
                self._answer(411 if not raw_length else 400, b"Content-Length required")
                return
            if int(raw_length) > MAX_CODEC_BODY:
                self._answer(413, b"body too large")
                return
            body = self.rfile.read(int(raw_length))
            try:
                payloads = json_format.Parse(body, Payloads())
                run = codec.encode if self.path == "/encode" else codec.decode
                result = asyncio.run(run(list(payloads.payloads)))
            except Exception:  # a bad request or a payload it cannot decrypt
                self._answer(400, b"not a payloads document, or not decryptable with these keys")
                return
            data = json_format.MessageToJson(Payloads(payloads=result)).encode()
            self._answer(200, data, "application/json")

    server = ThreadingHTTPServer((host, port), Handler)
    server.timeout = 10
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    return server
