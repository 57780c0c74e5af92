"""The demo warehouse: an event-driven participant that answers over NATS JetStream.

It consumes ``sagaloom.cmd.warehouse.pack`` and ``.unpack`` commands with a durable consumer,
applies each effect once per idempotency key in its own SQLite store (the same store as the
HTTP participants: records, effect log, idempotency table), publishes its reply to the subject
the command names, and acknowledges the command only after replying — so a crash in between
resends the same stored reply when the command comes again. It refuses to pack more than
:data:`MAX_PACK` items (a negative reply). Test faults per business key, comma-separated:
``no-reply`` (packs, but the reply to the pack is lost), ``reply-twice``, ``bad-token``,
``mute-undo`` (unpacks, never answers), ``slow-undo`` (answers an unpack
:data:`SLOW_UNDO_SECONDS` late).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
from pathlib import Path
from typing import Any

import nats
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig
from nats.js.errors import NotFoundError

from sagaloom.participants import (
    CORRELATION_HEADER,
    DEFAULT_NAMESPACE,
    IDEMPOTENCY_HEADER,
    MSG_ID,
    REPLY_TO_HEADER,
    TOKEN_HEADER,
    BrokerNames,
)
from services._store import Store

__all__ = ["MAX_PACK", "Warehouse"]

log = logging.getLogger("services.warehouse")
MAX_PACK = 50
"""Largest quantity the warehouse packs in one parcel; more is refused."""
SLOW_UNDO_SECONDS = 8.0
"""How late the ``slow-undo`` fault answers an unpack."""


async def _one_line(err: Exception) -> None:
    log.warning("warehouse: nats: %s: %s", type(err).__name__, err)


async def _disconnected() -> None:
    log.warning("warehouse: nats disconnected: reconnecting")


class Warehouse:
    """Runs in a background thread with its own event loop (like the HTTP participants)."""

    def __init__(self, url: str, store_path: Path, namespace: str = DEFAULT_NAMESPACE) -> None:
        """Serve commands from the broker at ``url``; keep effects in ``store_path``.

        ``namespace``: the engine's broker namespace (its ``SAGALOOM_NATS_NAMESPACE``).
        """
        self.url = url
        self.names = BrokerNames(namespace)
        self.store = Store(store_path)
        self.faults: dict[str, str] = {}
        """Test faults by business key (see the module's docstring)."""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._main, name="svc-warehouse", daemon=True)

    def start(self) -> Warehouse:
        """Start consuming in the background."""
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop consuming and close the store."""
        self._stop.set()
        self._thread.join(15)
        self.store.close()

    def _main(self) -> None:
        asyncio.run(self._run())

    async def _run(self) -> None:
        nc = await nats.connect(
            self.url,
            name="demo-warehouse",
            max_reconnect_attempts=-1,
            error_cb=_one_line,  # not nats-py's traceback per disconnect
            disconnected_cb=_disconnected,
        )
        js = nc.jetstream()
        while not self._stop.is_set():  # the engine's workers create the stream
            try:
                await js.stream_info(self.names.commands_stream)
                break
            except NotFoundError:
                await asyncio.sleep(0.5)
        config = ConsumerConfig(
            durable_name="warehouse", ack_policy=AckPolicy.EXPLICIT, ack_wait=30
        )
        sub = await js.pull_subscribe(
            f"{self.names.command_prefix}.warehouse.>",
            durable="warehouse",
            stream=self.names.commands_stream,
            config=config,
        )
        while not self._stop.is_set():
            try:
                batch = await sub.fetch(16, timeout=0.5)
            except TimeoutError:
                continue
            except Exception as err:
                log.warning("warehouse: %s", err)
                await asyncio.sleep(0.5)
                continue
            for message in batch:
                try:
                    await self._handle(js, message)
                except Exception:
                    log.exception("warehouse could not handle %s", message.subject)
        with contextlib.suppress(Exception):
            await nc.drain()

    async def _handle(self, js: Any, message: Msg) -> None:
        headers = message.headers or {}
        op = message.subject.rsplit(".", 1)[-1]
        idem_key = headers.get(IDEMPOTENCY_HEADER, "")
        body = json.loads(message.data or b"null") or {}
        key = str(body.get("order_id", ""))
        self.store.received(op, key, idem_key)
        with self.store.lock:
            stored = self.store.replay(idem_key)
            if stored is None:
                ok, data = self._apply(op, key, body, idem_key)
                self.store.remember(idem_key, 200 if ok else 409, {"ok": ok, "data": data})
            else:
                ok, data = stored[1]["ok"], stored[1]["data"]
        faults = self.faults.get(key, "").split(",")
        if op == "unpack" and "mute-undo" in faults:
            await message.ack()  # stopped answering undo commands (applied, no reply)
            return
        if op == "unpack" and "slow-undo" in faults:
            await asyncio.sleep(SLOW_UNDO_SECONDS)
        if not ("no-reply" in faults and op == "pack"):  # (its undo is still answered)
            correlation = headers.get(CORRELATION_HEADER, idem_key)
            token = headers.get(TOKEN_HEADER, "")
            reply = {
                "correlation_id": correlation,
                "token": "forged" if "bad-token" in faults else token,
                "ok": ok,
                "data": data if ok else {},
                "reason": "" if ok else str(data.get("reason", "refused")),
            }
            twice = "reply-twice" in faults
            for _ in range(2 if twice else 1):
                # The reply's id is the command's: a retried publish of this reply is stored
                # once, and the reply to a later send of the same command is new. (The
                # reply-twice fault sends two without ids.)
                msg_id = {} if twice else {MSG_ID: f"reply-{headers.get(MSG_ID, correlation)}"}
                await js.publish(
                    headers.get(REPLY_TO_HEADER, self.names.reply_subject),
                    json.dumps(reply).encode(),
                    headers=msg_id or None,
                )
        await message.ack()

    def _apply(self, op: str, key: str, body: dict[str, Any], idem_key: str) -> tuple[bool, Any]:
        record = self.store.record(key)
        if op == "pack":
            if record is not None and record["status"] == "undone":
                return False, {"reason": f"order {key} was already unpacked"}
            quantity = int(body.get("quantity", 0))
            if quantity > MAX_PACK:
                return False, {"reason": f"{quantity} items do not fit one parcel (max {MAX_PACK})"}
            if record is None:
                parcel = self.store.next_id("parcel")
                self.store.put(key, parcel, "active", body)
                self.store.log("do", key, idem_key)
                return True, {"id": parcel, "order_id": key}
            return True, {"id": record["id"], "order_id": key}
        if op == "unpack":
            if record is None:
                self.store.put(key, "-", "undone", None)  # tombstone: a late pack is refused
            elif record["status"] == "active":
                self.store.put(key, record["id"], "undone", record["payload"])
                self.store.log("undo", key, idem_key)
            return True, {"order_id": key}
        return False, {"reason": f"unknown command {op!r}"}
