"""``saga codec-server``: the Web UI's remote codec endpoint, so encrypted payloads read as JSON.

Serves ``POST /decode`` and ``POST /encode`` with ``{"payloads": [...]}`` bodies (Temporal's
codec-server protocol). It decrypts whatever it is sent, so every request must carry
``Authorization: Bearer <token>`` (``SAGALOOM_CODEC_TOKEN``; the UI sends it when its codec
setting passes an access token), bodies are bounded, and a non-loopback address needs TLS or an
explicit ``--allow-plaintext``. Without a token (``--no-auth``, loopback only) it answers only
requests whose ``Host`` is a loopback name, so a web page cannot reach it through DNS rebinding.

Served by aiohttp, as the worker endpoint is: a connection that has not sent a whole request
within :data:`IDLE_TIMEOUT` is closed, a body must arrive within :data:`BODY_TIMEOUT`, header
lines and counts are bounded — and a waiting connection costs no thread.
"""

from __future__ import annotations

import asyncio
import hmac
import html
import ipaddress
import logging
import ssl
from collections.abc import Awaitable, Callable, Sequence

from aiohttp import web
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload, Payloads
from temporalio.converter import PayloadCodec

from sagaloom._ops._serving import serve

__all__ = [
    "BODY_TIMEOUT",
    "IDLE_TIMEOUT",
    "MAX_CODEC_BODY",
    "CodecServer",
    "CodecServerError",
    "is_loopback",
]

log = logging.getLogger("sagaloom.codec")

Resolve = Callable[[Sequence[Payload]], Awaitable[list[Payload]]]
"""Turns payloads that refer to a store into the stored payloads."""
Draw = Callable[[str], Awaitable[tuple[str, bool]]]
"""A run's painted drawing as SVG, and whether it still runs (raises ``LookupError`` with a
message for an unknown run or a saga no module defines)."""

REFRESH_SECONDS = 2
"""How often the drawing page of a running saga fetches it again."""

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>saga {title}</title>
<style>body{{font-family:Helvetica,Arial,sans-serif;margin:16px}}#why{{color:#b71c1c}}</style>
</head><body><div id="drawing">loading the drawing of {title}</div><p id="why"></p>
<script>
const url = location.pathname + ".svg";
async function load() {{
  let token = sessionStorage.getItem("sagaloom-codec-token");
  const headers = token ? {{Authorization: "Bearer " + token}} : {{}};
  const response = await fetch(url, {{headers}});
  if (response.status === 401) {{
    token = prompt("The codec server's token (SAGALOOM_CODEC_TOKEN)");
    if (token) {{ sessionStorage.setItem("sagaloom-codec-token", token); return load(); }}
  }}
  if (!response.ok) {{
    document.getElementById("why").textContent = await response.text();
    return;
  }}
  document.getElementById("drawing").innerHTML = await response.text();
  if (response.headers.get("X-Saga-Running") === "yes") setTimeout(load, {refresh});
}}
load();
</script></body></html>
"""
"""The drawing page: no data in it; the SVG comes with the bearer token, like the codecs'."""


class PlainCodec(PayloadCodec):
    """No encryption: payloads pass through (a codec server that only shows stored payloads)."""

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        """See base class."""
        return list(payloads)

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        """See base class."""
        return list(payloads)


MAX_CODEC_BODY = 8 * 1024 * 1024
"""Largest request body (a workflow task's payloads fit well within)."""
IDLE_TIMEOUT = 5.0
"""Seconds a connection may stay without a whole request (half-sent headers included)."""
BODY_TIMEOUT = 10.0
"""Seconds a client gets to send its body (408 after)."""
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})


class CodecServerError(ValueError):
    """The codec server was asked to run in a way that would expose it."""


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address or ``localhost``."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class CodecServer:
    """The codec endpoint for the Web UI at ``origin``, running ``codec`` (the workers' keys)."""

    def __init__(
        self,
        codec: PayloadCodec,
        host: str,
        port: int,
        origin: str,
        *,
        token: str | None,
        tls: ssl.SSLContext | None = None,
        allow_plaintext: bool = False,
        resolve: Resolve | None = None,
        draw: Draw | None = None,
    ) -> None:
        """Prepare (not start) the server.

        Args:
            codec: The payload codec.
            host: Address to bind.
            port: Port to bind.
            origin: The Web UI's origin (CORS).
            token: The bearer token every request must carry; None only on loopback (then the
                ``Host`` header must name a loopback host).
            tls: Serve HTTPS with this context.
            allow_plaintext: Allow a non-loopback address without TLS.
            resolve: Turns references to stored payloads into the stored payloads (or a note)
                before decoding (``sagaloom.storage.resolve_references`` on the store).
            draw: Paints a run on its saga's graph: serves ``GET /sagas/<id>/graph`` (a page
                that fetches the drawing, again every few seconds while the saga runs) and
                ``/sagas/<id>/graph.svg`` (the drawing, authorised like the codec endpoints).

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
        self._codec, self._origin, self._tls, self._resolve = codec, origin, tls, resolve
        self._draw = draw
        self._host, self._port = host, port
        self._expected = f"Bearer {token}".encode() if token is not None else None
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        """The endpoint's base URL."""
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"{'https' if self._tls else 'http'}://{host}:{self._port}"

    async def start(self) -> None:
        """Start listening."""
        app = web.Application(client_max_size=MAX_CODEC_BODY)
        app.router.add_route("OPTIONS", "/{path:.*}", self._preflight)
        app.router.add_post("/encode", self._encode)
        app.router.add_post("/decode", self._decode)
        if self._draw is not None:
            app.router.add_get("/sagas/{workflow_id}/graph", self._drawing_page)
            app.router.add_get("/sagas/{workflow_id}/graph.svg", self._drawing)
        self._runner = await serve(
            app, self._host, self._port, idle=IDLE_TIMEOUT, max_line=8190, tls=self._tls
        )

    async def stop(self) -> None:
        """Stop listening."""
        if self._runner is not None:
            await self._runner.cleanup()

    def _cors(self, response: web.StreamResponse) -> web.StreamResponse:
        response.headers["Access-Control-Allow-Origin"] = self._origin
        response.headers["Access-Control-Allow-Methods"] = "POST, OPTIONS"
        response.headers["Access-Control-Allow-Headers"] = (
            "Content-Type, X-Namespace, Authorization"
        )
        response.headers["Access-Control-Allow-Credentials"] = "true"
        return response

    def _text(self, status: int, text: str) -> web.StreamResponse:
        return self._cors(web.Response(status=status, text=text))

    def _refusal(self, request: web.Request) -> web.StreamResponse | None:
        if self._expected is None:
            host = (request.url.host or "").strip("[]").lower()
            if host not in LOOPBACK_NAMES and not is_loopback(host):
                return self._text(403, "Host is not a loopback name (this endpoint has no token)")
            return None
        given = (request.headers.get("Authorization") or "").encode("utf-8", "surrogateescape")
        if not hmac.compare_digest(given, self._expected):
            return self._text(401, "missing or wrong bearer token")
        return None

    async def _preflight(self, request: web.Request) -> web.StreamResponse:
        return self._cors(web.Response(status=204))

    async def _encode(self, request: web.Request) -> web.StreamResponse:
        return await self._run(request, encode=True)

    async def _decode(self, request: web.Request) -> web.StreamResponse:
        return await self._run(request, encode=False)

    async def _run(self, request: web.Request, *, encode: bool) -> web.StreamResponse:
        refused = self._refusal(request)
        if refused is not None:
            return refused
        if request.content_length is None:
            return self._text(411, "Content-Length required")
        if request.content_length > MAX_CODEC_BODY:
            return self._text(413, "body too large")
        try:
            body = await asyncio.wait_for(request.read(), BODY_TIMEOUT)
        except web.HTTPRequestEntityTooLarge:
            return self._text(413, "body too large")
        except TimeoutError:
            return self._text(408, f"body not received within {BODY_TIMEOUT:g}s")
        try:
            payloads = json_format.Parse(body, Payloads())
            given = list(payloads.payloads)
            if not encode and self._resolve is not None:
                given = await self._resolve(given)
            run = self._codec.encode if encode else self._codec.decode
            result = await run(given)
        except Exception:  # a bad request or a payload it cannot decrypt
            return self._text(400, "not a payloads document, or not decryptable with these keys")
        data = json_format.MessageToJson(Payloads(payloads=result))
        return self._cors(web.Response(text=data, content_type="application/json"))

    async def _drawing_page(self, request: web.Request) -> web.StreamResponse:
        title = html.escape(request.match_info["workflow_id"])
        page = _PAGE.format(title=title, refresh=REFRESH_SECONDS * 1000)
        return web.Response(text=page, content_type="text/html")

    async def _drawing(self, request: web.Request) -> web.StreamResponse:
        denied = self._refusal(request)  # the drawing shows what decoding would
        if denied is not None:
            return denied
        assert self._draw is not None
        try:
            svg, running = await self._draw(request.match_info["workflow_id"])
        except LookupError as err:
            return web.Response(status=404, text=str(err.args[0] if err.args else err))
        except Exception as err:  # Temporal away, say: one line, and the page says why
            log.warning("drawing of %s: %s", request.match_info["workflow_id"], err)
            return web.Response(status=503, text=f"could not read the run: {err}")
        return web.Response(
            text=svg,
            content_type="image/svg+xml",
            headers={"X-Saga-Running": "yes" if running else "no", "Cache-Control": "no-store"},
        )
