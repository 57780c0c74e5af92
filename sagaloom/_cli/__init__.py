"""The ``saga`` command line: dev, worker, start, status, show, list, cancel, resolve, reply."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import secrets
import signal
import ssl
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, NoReturn

from temporalio.client import Client, WorkflowExecutionStatus, WorkflowUpdateFailedError
from temporalio.service import RPCError

from sagaloom._codec import EncryptionCodec, EncryptionKeyError, codec_from_env
from sagaloom._definition import Saga, SagaInputError
from sagaloom._model import Reply, Resolution, SagaState, reply_problem
from sagaloom._names import REPLY_UPDATE, step_key
from sagaloom._ops._codec_server import CodecServer, CodecServerError, is_loopback
from sagaloom._ops._logging import configure_logging
from sagaloom.client._deployments import set_current_build
from sagaloom.client._sagas import DEFAULT_UI, connect, start_saga, ui_link
from sagaloom.client._views import list_query, list_sagas, read_saga, step_table
from sagaloom.worker._config import (
    DEFAULT_TASK_QUEUE,
    VERSIONING_BEHAVIORS,
    ConfigError,
    WorkerConfig,
)
from sagaloom.worker._registry import UnknownSagaError, find_saga, load_sagas

__all__ = ["main"]

DATA_DIR = Path(".sagaloom")
UI_FILE = "ui-url"
"""Where ``saga dev`` notes its Web UI's URL in ``DATA_DIR`` (written by ``server/_stack``)."""


def default_ui() -> str:
    """The Web UI that links point to: ``SAGALOOM_UI``, else the one ``saga dev`` runs here.

    ``saga dev`` (and ``./run dev``) note their UI's URL in ``.sagaloom/ui-url`` while they run,
    so links are right when its UI is not on :8233; else ``http://localhost:8233``.
    """
    if os.environ.get("SAGALOOM_UI"):
        return os.environ["SAGALOOM_UI"]
    with contextlib.suppress(OSError):
        noted = (DATA_DIR / UI_FILE).read_text().strip()
        if noted.startswith(("http://", "https://")):
            return noted
    return DEFAULT_UI


CLI_ENV = ("SAGALOOM_LOG_LEVEL", "SAGALOOM_LOG_FORMAT", "SAGALOOM_UI")
# (clients also read SAGALOOM_ENCRYPTION_KEYS and SAGALOOM_ENCODE_FAILURES, as workers do)
"""Variables the ``saga`` command itself reads (the worker's are :class:`WorkerConfig`'s)."""


MODULE_HELP = (
    "module defining sagas, for example myapp.sagas (repeatable; also SAGALOOM_SAGA_MODULES); "
    "found in the current folder as with python -m"
)


class CliError(Exception):
    """A user-facing error: printed as one line, exit code 2."""


def _services(pairs: Sequence[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs:
        name, sep, url = pair.partition("=")
        if not sep or not name or not url.startswith(("http://", "https://")):
            raise CliError(f"--service {pair!r}: expected NAME=http://host:port")
        out[name.lower()] = url
    return out


async def _client(args: argparse.Namespace) -> Client:
    try:
        return await connect(
            args.address,
            args.namespace,
            codec=codec_from_env(),
            encode_failures=os.environ.get("SAGALOOM_ENCODE_FAILURES", "") in ("1", "true"),
        )
    except RuntimeError as err:
        raise CliError(f"cannot reach Temporal at {args.address}: {err}") from None


def worker_config(args: argparse.Namespace) -> WorkerConfig:
    """The environment's configuration with the command line's flags on top."""
    config = WorkerConfig.from_env()
    overrides: dict[str, Any] = {"address": args.address, "namespace": args.namespace}
    if args.task_queue:
        overrides["task_queue"] = args.task_queue
    if args.service:
        overrides["services"] = {**config.services, **_services(args.service)}
    if args.module:
        overrides["saga_modules"] = (*config.saga_modules, *args.module)
    for flag in (
        "max_concurrent_activities",
        "metrics_address",
        "health_address",
        "processes",
        "deployment",
        "build_id",
        "versioning",
    ):
        if getattr(args, flag, None):
            overrides[flag] = getattr(args, flag)
    if getattr(args, "tracing", False):
        overrides["tracing"] = True
    if getattr(args, "no_sandbox", False):
        overrides["sandboxed"] = False
    if getattr(args, "nats", None):
        overrides["nats_url"] = args.nats
    if getattr(args, "nats_namespace", None):
        overrides["nats_namespace"] = args.nats_namespace
    if getattr(args, "trigger", None):
        overrides["triggers"] = (*config.triggers, *args.trigger)
    return replace(config, **overrides)


async def cmd_worker(args: argparse.Namespace) -> int:
    from sagaloom.worker._run import run_worker

    await run_worker(worker_config(args))
    return 0


def _modules(args: argparse.Namespace) -> list[str]:
    """The saga modules named by ``--module`` and ``SAGALOOM_SAGA_MODULES``."""
    env = os.environ.get("SAGALOOM_SAGA_MODULES", "")
    return [*args.module, *(m.strip() for m in env.split(",") if m.strip())]


MAX_ID_LENGTH = 1000
"""Longest workflow id Temporal accepts by default."""


def _workflow_id(value: str, flag: str = "--id") -> str:
    """A workflow id as given on the command line, checked.

    Raises:
        CliError: empty, too long, or with control characters (a newline, say).
    """
    if not value:
        raise CliError(f"{flag} is empty")
    if len(value) > MAX_ID_LENGTH:
        raise CliError(f"{flag} is {len(value)} characters; the limit is {MAX_ID_LENGTH}")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise CliError(f"{flag} {value!r} holds control characters")
    return value


def _json(text: str, flag: str) -> Any:
    """JSON from a flag: inline, ``@path`` (a file) or ``-`` (standard input).

    Raises:
        CliError: naming the flag, when it cannot be read or parsed.
    """
    if text == "-":
        text = sys.stdin.read()
    elif text.startswith("@"):
        try:
            text = Path(text[1:]).read_text()
        except OSError as err:
            raise CliError(f"{flag} {text}: {err.strerror or err}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise CliError(f"{flag} is not valid JSON: {err}") from None
    except RecursionError:
        raise CliError(f"{flag} is nested too deeply") from None


async def cmd_start(args: argparse.Namespace) -> int:
    sagas = load_sagas(_modules(args))
    saga = find_saga(args.saga, sagas)
    if args.id is not None:
        _workflow_id(args.id)
    data = _json(args.input, "--input")
    try:
        saga.parse_input(data)  # rejects bad input before connecting
    except RecursionError:
        raise CliError("--input is nested too deeply") from None
    if args.wait_for is not None and args.wait_for not in saga.position:
        steps = ", ".join(s.name for s in saga.steps)
        raise CliError(f"--wait-for {args.wait_for!r}: {saga.name} has no such step ({steps})")
    client = await _client(args)
    if args.wait_for is not None:
        return await _start_and_wait_for(client, saga, data, args)
    handle = await start_saga(client, saga, data, id=args.id, task_queue=args.task_queue)
    print(f"started {handle.id}  {ui_link(handle.id, namespace=args.namespace, ui=args.ui)}")
    if args.wait:
        from sagaloom.client._sagas import outcome

        result = await outcome(handle)
        print(f"{result.status.value} {result.error or ''}".rstrip())
        return 0 if result.status.value == "COMPLETED" else 1
    return 0


async def _start_and_wait_for(
    client: Client, saga: Saga[Any], data: Any, args: argparse.Namespace
) -> int:
    """``saga start --wait-for STEP``: the step's output as JSON, or how the saga failed first."""
    answer = await start_saga(
        client, saga, data, id=args.id, task_queue=args.task_queue, wait_for=args.wait_for
    )
    wid = answer.handle.id
    print(f"saga {wid}  {ui_link(wid, namespace=args.namespace, ui=args.ui)}", file=sys.stderr)
    if answer.ended is None:
        print(json.dumps({"step": answer.step, "output": answer.output}))
        return 0
    ended = answer.ended
    print(json.dumps({"step": answer.step, "status": ended.status.value, "error": ended.error}))
    return 1


async def cmd_show(args: argparse.Namespace) -> int:
    _workflow_id(args.id, "id")
    client = await _client(args)
    try:
        state, description, source = await read_saga(client, args.id)
    except RPCError as err:
        raise CliError(f"saga {args.id!r}: {err.message}") from None
    if args.json:
        body = {"workflow_id": args.id, "source": source, **state.model_dump(mode="json")}
        print(json.dumps(body, indent=2))
        return 0
    print(step_table(state, description))
    status = description.status.name.lower() if description.status else "unknown"
    print(f"\nworkflow {status}; {ui_link(args.id, namespace=args.namespace, ui=args.ui)}")
    if source == "history":
        print(
            "(from the history: no worker answered the live query, or the saga ended without a "
            "report; timers, child sagas and local activities are not listed)"
        )
    return 0


async def cmd_resolve(args: argparse.Namespace) -> int:
    _workflow_id(args.id, "id")
    if args.retry:
        resolution = Resolution(action="retry", note=args.note)
    elif args.skip:
        resolution = Resolution(action="skip", step=args.skip, note=args.note)
    else:
        resolution = Resolution(
            action="mark_compensated", step=args.mark_compensated, note=args.note
        )
    client = await _client(args)
    handle = client.get_workflow_handle(args.id)
    try:
        state = await handle.execute_update("resolve", resolution, result_type=SagaState)
    except WorkflowUpdateFailedError as err:
        cause = err.cause
        raise CliError(f"saga {args.id!r}: {getattr(cause, 'message', cause)}") from None
    except RPCError as err:
        raise CliError(f"saga {args.id!r}: {err.message}") from None
    print(f"{resolution.action} recorded for {args.id}" + (f": {args.note}" if args.note else ""))
    print(step_table(state))
    return 0


async def cmd_reply(args: argparse.Namespace) -> int:
    _workflow_id(args.id, "id")
    data = _json(args.data, "--data")
    if not isinstance(data, dict):
        raise CliError('--data must be a JSON object, for example \'{"id": "htl-1"}\'')
    reply = Reply(
        correlation_id=step_key(args.id, args.step),
        ok=args.reject is None,
        data=data,
        reason=args.reject or "",
    )
    problem = reply_problem(reply)
    if problem is not None:
        raise CliError(problem)
    client = await _client(args)
    try:
        await client.get_workflow_handle(args.id).execute_update(REPLY_UPDATE, reply)
    except WorkflowUpdateFailedError as err:
        cause = err.cause
        raise CliError(f"saga {args.id!r}: {getattr(cause, 'message', cause)}") from None
    except RPCError as err:
        raise CliError(f"saga {args.id!r}: {err.message}") from None
    print(f"reply sent to {args.id} step {args.step}: {'ok' if reply.ok else 'rejected'}")
    return 0


async def cmd_codec_server(args: argparse.Namespace) -> int:
    codec = codec_from_env()
    if codec is None:
        raise CliError("set SAGALOOM_ENCRYPTION_KEYS (the workers' keys) first")
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
            codec,
            args.host,
            args.port,
            args.ui,
            token=None if args.no_auth else token,
            tls=tls,
            allow_plaintext=args.allow_plaintext,
        )
    except CodecServerError as err:
        raise CliError(str(err)) from None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await server.start()
    print(f"codec endpoint {server.url} for the Web UI at {args.ui}", flush=True)
    try:
        await stop.wait()
    finally:
        await server.stop()
    return 0


async def cmd_new_key(args: argparse.Namespace) -> int:
    print(f"{args.id}={EncryptionCodec.new_key()}")
    return 0


async def cmd_list(args: argparse.Namespace) -> int:
    try:
        query = list_query(args.status, args.saga)
    except ValueError as err:
        raise CliError(str(err)) from None
    client = await _client(args)
    rows = await list_sagas(client, query, args.limit)
    if args.json:
        print(json.dumps([row.as_json() for row in rows], indent=2))
        return 0
    print(f"{'status':<16} {'saga':<12} {'key':<24} {'step':<18} workflow")
    for row in rows:
        print(
            f"{row.status:<16} {row.saga:<12} {row.key or '-':<24} {row.step or '-':<18} "
            f"{ui_link(row.workflow_id, namespace=args.namespace, ui=args.ui)}"
        )
    print(f"({len(rows)} saga(s); query: {query})", file=sys.stderr)
    return 0


async def cmd_cancel(args: argparse.Namespace) -> int:
    _workflow_id(args.id, "id")
    client = await _client(args)
    handle = client.get_workflow_handle(args.id)
    try:
        description = await handle.describe()
        if description.status is not WorkflowExecutionStatus.RUNNING:
            raise CliError(f"saga {args.id!r} is not running ({description.status})")
        await handle.cancel()
    except RPCError as err:
        raise CliError(f"saga {args.id!r}: {err.message}") from None
    print(f"cancel requested for {args.id}: its started steps will be compensated")
    return 0


async def cmd_set_current(args: argparse.Namespace) -> int:
    client = await _client(args)
    try:
        await set_current_build(client, args.deployment, args.build_id)
    except RPCError as err:
        what = f"deployment {args.deployment!r} build {args.build_id!r}"
        raise CliError(f"{what}: {err.message}") from None
    print(
        f"{args.deployment} build {args.build_id} is current: new sagas start on it; "
        "pinned sagas finish on the build they started on (keep its workers until they do)"
    )
    return 0


async def cmd_contract(args: argparse.Namespace) -> int:
    from sagaloom._contract import write_contracts

    sagas = load_sagas(_modules(args))
    if not sagas:
        raise CliError("no sagas: name their modules with --module or SAGALOOM_SAGA_MODULES")
    for path in write_contracts([cls.saga for cls in sagas.values()], args.out):
        print(path)
    return 0


async def cmd_dead_letters(args: argparse.Namespace) -> int:
    from sagaloom.client._broker_admin import dead_letters, redeliver

    try:
        if args.redeliver is not None:
            subject = await redeliver(args.nats, args.redeliver, namespace=args.nats_namespace)
            print(f"dead letter {args.redeliver} published again to {subject}")
            return 0
        letters = await dead_letters(
            args.nats,
            args.limit,
            kind=args.kind,
            subject=args.subject,
            oldest_first=args.oldest_first,
            namespace=args.nats_namespace,
        )
    except LookupError as err:
        raise CliError(str(err)) from None
    except OSError as err:
        raise CliError(f"NATS at {args.nats}: {err}") from None
    for letter in letters:
        if args.json:
            body = letter.data.decode(errors="replace")
            print(
                json.dumps(
                    {
                        "seq": letter.seq,
                        "kind": letter.kind,
                        "subject": letter.subject,
                        "reason": letter.reason,
                        "time": letter.time,
                        "data": body,
                    }
                )
            )
        else:
            preview = letter.data[:80].decode(errors="replace").replace("\n", " ")
            print(
                f"{letter.seq:>6}  {letter.kind:<8} {letter.subject:<24} {letter.reason}  {preview}"
            )
    print(f"({len(letters)} dead letter(s))", file=sys.stderr)
    return 0


async def cmd_events(args: argparse.Namespace) -> int:
    from sagaloom.client._broker_admin import saga_events

    _workflow_id(args.id, "id")
    try:
        events = await saga_events(args.nats, args.id, namespace=args.nats_namespace)
    except OSError as err:
        raise CliError(f"NATS at {args.nats}: {err}") from None
    for event in events:
        if args.json:
            print(event.model_dump_json())
            continue
        data = event.data
        what = " ".join(
            f"{k}={data[k]}" for k in ("step", "attempt", "status", "error") if k in data
        )
        print(f"{event.time}  {event.type.removeprefix('io.sagaloom.'):<24} {what}".rstrip())
    print(f"({len(events)} event(s) for {args.id})", file=sys.stderr)
    return 0


async def cmd_dev(args: argparse.Namespace) -> int:
    from sagaloom.server._stack import run_dev

    return await run_dev(args.data_dir, worker_config(args), ui_port=args.ui_port)


TLS_FLAGS = (
    ("api-key", "TEMPORAL_API_KEY"),
    ("tls-cert-path", "TEMPORAL_TLS_CLIENT_CERT_PATH"),
    ("tls-key-path", "TEMPORAL_TLS_CLIENT_KEY_PATH"),
    ("tls-ca-path", "TEMPORAL_TLS_SERVER_CA_CERT_PATH"),
    ("tls-server-name", "TEMPORAL_TLS_SERVER_NAME"),
)
"""Connection flags and the standard Temporal variables they set."""


def apply_tls_flags(args: argparse.Namespace) -> None:
    """Turn TLS/API-key flags into Temporal's standard variables, which every connect reads."""
    for flag, variable in TLS_FLAGS:
        value = getattr(args, flag.replace("-", "_"), None)
        if value:
            os.environ[variable] = value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="saga", description="sagaloom: sagas on Temporal")
    parser.add_argument("--log-level", default=os.environ.get("SAGALOOM_LOG_LEVEL", "INFO"))
    parser.add_argument(
        "--log-format",
        choices=("text", "json"),
        default=os.environ.get("SAGALOOM_LOG_FORMAT", "text"),
        help="json: one object per line (SAGALOOM_LOG_FORMAT)",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    def connection(p: argparse.ArgumentParser) -> None:
        p.add_argument("--address", default=os.environ.get("TEMPORAL_ADDRESS", "127.0.0.1:7233"))
        p.add_argument("--namespace", default=os.environ.get("TEMPORAL_NAMESPACE", "default"))
        p.add_argument("--ui", default=default_ui(), help="Web UI base URL for links")
        secure = p.add_argument_group("TLS and API keys (flags override TEMPORAL_* variables)")
        for flag, _ in TLS_FLAGS:
            secure.add_argument(f"--{flag}", metavar="PATH" if "path" in flag else "VALUE")

    def worker_flags(p: argparse.ArgumentParser) -> None:
        p.add_argument("--task-queue", help=f"default $SAGALOOM_TASK_QUEUE or {DEFAULT_TASK_QUEUE}")
        p.add_argument("--service", action="append", default=[], metavar="NAME=URL")
        p.add_argument("--module", action="append", default=[], help=MODULE_HELP)
        p.add_argument(
            "--trigger",
            action="append",
            default=[],
            metavar="SUBJECT=SAGA",
            help="each NATS message on SUBJECT starts SAGA (SAGALOOM_TRIGGERS)",
        )
        p.add_argument(
            "--nats",
            metavar="URL",
            help="NATS JetStream for Command steps, events, triggers (SAGALOOM_NATS_URL; "
            "saga dev starts one there when none runs, default nats://127.0.0.1:4222)",
        )
        p.add_argument(
            "--nats-namespace",
            metavar="NAME",
            help="broker namespace: subjects, streams, consumers (default sagaloom; "
            "SAGALOOM_NATS_NAMESPACE)",
        )

    p = sub.add_parser(
        "dev",
        help="run the embedded Temporal dev server (and a worker for --module sagas) until Ctrl-C",
    )
    connection(p)
    worker_flags(p)
    p.add_argument("--ui-port", type=int, default=8233)
    p.add_argument("--data-dir", type=Path, default=DATA_DIR)

    p = sub.add_parser("worker", help="run a worker process (SIGTERM/SIGINT stop it gracefully)")
    connection(p)
    worker_flags(p)
    p.add_argument("--max-concurrent-activities", type=int)
    p.add_argument("--processes", type=int, help="worker processes on this host (supervised)")
    p.add_argument("--metrics-address", metavar="HOST:PORT", help="serve Prometheus metrics")
    p.add_argument("--health-address", metavar="HOST:PORT", help="serve /healthz and /readyz")
    p.add_argument("--tracing", action="store_true", help="OpenTelemetry tracing interceptors")
    p.add_argument(
        "--no-sandbox",
        action="store_true",
        help="run workflow code unsandboxed: less CPU per saga, but non-determinism in your "
        "step builders is no longer caught (SAGALOOM_SANDBOX=off)",
    )
    p.add_argument(
        "--deployment",
        metavar="NAME",
        help="Worker Versioning: this worker's deployment (with --build-id; SAGALOOM_DEPLOYMENT)",
    )
    p.add_argument(
        "--build-id", metavar="ID", help="Worker Versioning: this build (SAGALOOM_BUILD_ID)"
    )
    p.add_argument(
        "--versioning",
        choices=VERSIONING_BEHAVIORS,
        help="pinned (default: a saga finishes on the build it started on) or auto-upgrade",
    )

    p = sub.add_parser(
        "set-current",
        help="Worker Versioning: route new sagas to a build (pinned sagas stay on theirs)",
    )
    connection(p)
    p.add_argument("--deployment", metavar="NAME", required=True)
    p.add_argument("--build-id", metavar="ID", required=True)

    p = sub.add_parser("start", help="validate the input and start a saga")
    connection(p)
    p.add_argument("saga")
    p.add_argument(
        "--input", required=True, help="the saga input as JSON, @file.json, or - (stdin)"
    )
    p.add_argument("--id", help="workflow id (default: <saga>-<business key>)")
    p.add_argument(
        "--task-queue", default=os.environ.get("SAGALOOM_TASK_QUEUE", DEFAULT_TASK_QUEUE)
    )
    p.add_argument("--module", action="append", default=[], help=MODULE_HELP)
    p.add_argument("--wait", action="store_true", help="wait for the outcome")
    p.add_argument(
        "--wait-for",
        metavar="STEP",
        help="answer early: print STEP's output once it is done (or the saga's failure if "
        "first); a saga already running for the same key is attached to, not started again",
    )

    for name, helptext in (
        ("show", "a saga's live step table: status, attempts, timings, compensations"),
        ("status", "same as show"),
        ("cancel", "cancel a saga: its started steps are compensated"),
    ):
        p = sub.add_parser(name, help=helptext)
        connection(p)
        p.add_argument("id")
        if name != "cancel":
            p.add_argument("--json", action="store_true")

    p = sub.add_parser("resolve", help="decide for a saga parked on a failed compensation")
    connection(p)
    p.add_argument("id")
    action = p.add_mutually_exclusive_group(required=True)
    action.add_argument("--retry", action="store_true", help="run the compensation again")
    action.add_argument("--skip", metavar="STEP", help="leave it undone (say why in --note)")
    action.add_argument("--mark-compensated", metavar="STEP", help="it was undone by hand")
    p.add_argument("--note", default="", help="recorded with the decision")

    p = sub.add_parser("reply", help="deliver an asynchronous participant's reply to a step")
    connection(p)
    p.add_argument("id")
    p.add_argument("--step", required=True)
    p.add_argument(
        "--data", default="{}", help="JSON object reported by the participant (@file, -)"
    )
    p.add_argument("--reject", metavar="REASON", help="a negative reply")

    p = sub.add_parser("codec-server", help="decrypt payloads for the Web UI (codec endpoint)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8888)
    p.add_argument("--ui", default=default_ui(), help="UI origin")
    p.add_argument("--tls-cert", metavar="PATH", help="serve HTTPS with this certificate")
    p.add_argument("--tls-key", metavar="PATH", help="and this key")
    p.add_argument("--allow-plaintext", action="store_true", help="allow HTTP off loopback")
    p.add_argument(
        "--no-auth", action="store_true", help="no bearer token (loopback only, local dev)"
    )

    nats_default = os.environ.get("SAGALOOM_NATS_URL", "nats://127.0.0.1:4222")
    namespace_default = os.environ.get("SAGALOOM_NATS_NAMESPACE") or "sagaloom"
    p = sub.add_parser(
        "dead-letters", help="list the broker's dead letters (or re-deliver one after a fix)"
    )
    p.add_argument("--nats", metavar="URL", default=nats_default)
    p.add_argument("--nats-namespace", metavar="NAME", default=namespace_default)
    p.add_argument("--limit", type=int, default=100, help="at most this many (newest first)")
    p.add_argument("--kind", choices=["reply", "trigger"], help="only this kind of letter")
    p.add_argument(
        "--subject", metavar="SUBJECT", help="only those first sent here (a.*.c, a.> match)"
    )
    p.add_argument("--oldest-first", action="store_true", help="walk from the oldest")
    p.add_argument("--redeliver", type=int, metavar="SEQ", help="publish it again, then drop it")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("events", help="a saga run's lifecycle events, from the broker")
    p.add_argument("id", help="workflow id")
    p.add_argument("--nats", metavar="URL", default=nats_default)
    p.add_argument("--nats-namespace", metavar="NAME", default=namespace_default)
    p.add_argument("--json", action="store_true", help="one CloudEvent per line")

    p = sub.add_parser(
        "contract",
        help="write each saga's contract (JSON Schema), its Mermaid diagram, and the AsyncAPI "
        "document of the broker channels",
    )
    p.add_argument("--module", action="append", default=[], help=MODULE_HELP)
    p.add_argument("--out", type=Path, default=Path("docs/contracts"))

    p = sub.add_parser("new-key", help="print a new encryption key entry (<id>=<base64>)")
    p.add_argument("id", help="key id, for example 2026-11")

    p = sub.add_parser("list", help="list sagas from Temporal visibility")
    connection(p)
    p.add_argument("--status", help="running, completed, compensated, needs_attention, …")
    p.add_argument("--saga", help="saga name, for example OrderSaga")
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--json", action="store_true")
    return parser


COMMANDS = {
    "worker": cmd_worker,
    "start": cmd_start,
    "show": cmd_show,
    "status": cmd_show,
    "list": cmd_list,
    "resolve": cmd_resolve,
    "reply": cmd_reply,
    "codec-server": cmd_codec_server,
    "new-key": cmd_new_key,
    "cancel": cmd_cancel,
    "set-current": cmd_set_current,
    "dead-letters": cmd_dead_letters,
    "contract": cmd_contract,
    "events": cmd_events,
    "dev": cmd_dev,
}


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """Entry point of the ``saga`` console script: run the command, then exit the process.

    The process ends with ``os._exit`` once output is flushed: the Temporal runtime's native
    threads can call into Python while the interpreter finalizes, which was seen to abort a
    finished command (SIGABRT after its work was done).
    """
    code = _run(argv)
    sys.stdout.flush()
    sys.stderr.flush()
    logging.shutdown()
    os._exit(code)


def _run(argv: Sequence[str] | None) -> int:
    args = _parser().parse_args(argv)
    configure_logging(args.log_level.upper(), None, json_lines=args.log_format == "json")
    apply_tls_flags(args)
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # find --module sagas in the current folder, as python -m
    try:
        if args.command == "worker" and worker_config(args).processes > 1:
            load_sagas(worker_config(args).saga_modules)  # fail here, not in every child
            from sagaloom.worker._supervisor import Supervisor

            return Supervisor(worker_config(args)).run()  # in the main thread: it owns signals
        return asyncio.run(COMMANDS[args.command](args))
    except (CliError, ConfigError, EncryptionKeyError, SagaInputError, UnknownSagaError) as err:
        print(f"saga {args.command}: error: {err}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as err:
        print(
            f"saga {args.command}: error: cannot import {err.name!r} (looked in the current "
            f"folder {os.getcwd()} and on PYTHONPATH): {err}",
            file=sys.stderr,
        )
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
