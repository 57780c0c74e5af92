"""``saga codec-server``, ``saga new-key`` and ``saga contract``: tools around sagas."""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import secrets
import signal
import ssl
from pathlib import Path
from typing import Any

from sagaloom._cli._common import CliError, add_command, default_ui, module_flag, modules
from sagaloom._cli._graphs import drawer
from sagaloom._config._settings import setting
from sagaloom._encoding._codec import EncryptionCodec, codec_from_env
from sagaloom._ops._codec_server import CodecServer, CodecServerError, PlainCodec, is_loopback
from sagaloom.storage import PayloadStore, resolve_references
from sagaloom.worker._registry import load_sagas

__all__ = ["register"]


async def cmd_codec_server(args: argparse.Namespace) -> int:
    """Serve the Web UI's codec endpoint until SIGINT/SIGTERM."""
    codec = codec_from_env()
    try:
        store = PayloadStore.from_env(os.environ)
    except ValueError as err:
        raise CliError(str(err)) from None
    draw = drawer(args)
    if codec is None and not store.on and draw is None:
        raise CliError(
            "set SAGALOOM_ENCRYPTION_KEYS (the workers' keys), a payload store "
            "(SAGALOOM_PAYLOAD_STORE, SAGALOOM_NATS_URL), the saga modules whose runs it draws "
            "(--module), or several, first"
        )
    resolve = None
    if store.on:  # the Web UI shows what a history's references point to
        storage = store.external_storage()
        assert storage is not None
        resolve = functools.partial(resolve_references, storage)
        print(f"stored payloads read from the {store.where()}")
    token = os.environ.get("SAGALOOM_CODEC_TOKEN") or None
    if token is None and not args.no_auth:
        token = secrets.token_urlsafe(24)
        print(f"no SAGALOOM_CODEC_TOKEN: requests must send Authorization: Bearer {token}")
    if args.no_auth and not is_loopback(args.host):
        raise CliError("--no-auth is for loopback only")
    tls = None
    if args.tls_cert or args.tls_key:
        if not (args.tls_cert and args.tls_key):
            raise CliError("--tls-cert and --tls-key go together")
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(args.tls_cert, args.tls_key)
    try:
        server = CodecServer(
            codec or PlainCodec(),
            args.host,
            args.port,
            args.ui,
            token=None if args.no_auth else token,
            tls=tls,
            allow_plaintext=args.allow_plaintext,
            resolve=resolve,
            draw=draw,
        )
    except CodecServerError as err:
        raise CliError(str(err)) from None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await server.start()
    print(f"codec endpoint {server.url} for the Web UI at {args.ui}", flush=True)
    if draw is not None:
        print(f"runs drawn at {server.url}/sagas/<workflow id>/graph "
              "(workers link to it: SAGALOOM_DRAWINGS_URL)", flush=True)  # fmt: skip
    try:
        await stop.wait()
    finally:
        await server.stop()
    return 0


async def cmd_new_key(args: argparse.Namespace) -> int:
    """Print a new encryption key entry."""
    print(f"{args.id}={EncryptionCodec.new_key()}")
    return 0


async def cmd_contract(args: argparse.Namespace) -> int:
    """Write each saga's contract, diagram, and the broker's AsyncAPI document."""
    from sagaloom._cli._contract import write_contracts

    sagas = load_sagas(modules(args))
    if not sagas:
        raise CliError("no sagas: name their modules with --module or SAGALOOM_SAGA_MODULES")
    for path in write_contracts([cls.saga for cls in sagas.values()], args.out):
        print(path)
    return 0


def register(sub: Any) -> None:
    """Add this group's commands."""
    p = add_command(
        sub,
        "codec-server",
        cmd_codec_server,
        "decrypt payloads for the Web UI (codec endpoint)",
        "SAGALOOM_ENCRYPTION_KEYS=... SAGALOOM_CODEC_TOKEN=... saga codec-server --port 8888",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    p.add_argument("--port", type=int, default=8888, help="port to listen on (8888)")
    p.add_argument("--ui", default=default_ui(), help="UI origin")
    p.add_argument("--tls-cert", metavar="PATH", help="serve HTTPS with this certificate")
    p.add_argument("--tls-key", metavar="PATH", help="and this key")
    p.add_argument("--allow-plaintext", action="store_true", help="allow HTTP off loopback")
    p.add_argument(
        "--no-auth", action="store_true", help="no bearer token (loopback only, local dev)"
    )
    module_flag(p)  # the sagas whose runs it draws (GET /sagas/<id>/graph)
    for name in ("address", "namespace"):
        s = setting(name)
        p.add_argument(s.flag or "", dest=s.field, metavar=s.metavar,
                       help=f"{s.help}, where the runs it draws are ({s.env})")  # fmt: skip

    p = add_command(
        sub,
        "new-key",
        cmd_new_key,
        "print a new encryption key entry (<id>=<base64>)",
        "saga new-key 2026-11",
    )
    p.add_argument("id", help="key id, for example 2026-11")

    p = add_command(
        sub,
        "contract",
        cmd_contract,
        "write each saga's contract (JSON Schema), its Mermaid diagram, and the AsyncAPI "
        "document of the broker channels",
        "saga contract --module myapp.sagas --out docs/contracts",
    )
    module_flag(p)
    p.add_argument(
        "--out", type=Path, default=Path("docs/contracts"), help="folder (docs/contracts)"
    )
