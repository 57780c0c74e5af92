"""The demo warehouse: an event-driven participant on the toolkit, taking commands over NATS.

It handles ``warehouse.pack`` and ``warehouse.unpack`` commands with the toolkit's broker
consumer (:meth:`sagaloom.service.SagaService.consume`): each command applies once per
idempotency key in its own SQLite file, its reply is written to the outbox in the same
transaction, and the command is acknowledged only after that commit — so a crash in between
sends the same stored reply when the command comes again. It refuses to pack more than
:data:`MAX_PACK` items (a negative reply). Test faults per business key, comma-separated:
``no-reply`` (packs, but the reply to the pack is lost), ``reply-twice``, ``bad-token``,
``mute-undo`` (unpacks, never answers), ``slow-undo`` (answers an unpack
:data:`SLOW_UNDO_SECONDS` late), ``refuse-undo`` (answers an unpack with a negative reply).
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.ext.asyncio import AsyncSession

from sagaloom.participants import DEFAULT_NAMESPACE
from sagaloom.service import Answer, CommandInfo, Refused, Relay, SagaService, sqlite_engine
from services._store import METADATA, Books, Store

__all__ = ["MAX_PACK", "Warehouse"]

log = logging.getLogger("services.warehouse")
MAX_PACK = 50
"""Largest quantity the warehouse packs in one parcel; more is refused."""
SLOW_UNDO_SECONDS = 8.0
"""How late the ``slow-undo`` fault answers an unpack."""
NatsPublish = Callable[[str, bytes, dict[str, str]], Awaitable[None]]
"""What the toolkit's relay publishes a broker reply with (subject, payload, headers)."""


class Pack(BaseModel):
    """A pack command's body."""

    model_config = ConfigDict(extra="allow")
    order_id: str = Field(min_length=1, max_length=128)
    quantity: int = Field(0, ge=0, le=1_000_000)
    packing_list: str = ""


class OrderRef(BaseModel):
    """An unpack command's body."""

    model_config = ConfigDict(extra="allow")
    order_id: str = Field(min_length=1, max_length=128)


class Warehouse:
    """Runs in a background thread with its own event loop (like the HTTP participants)."""

    def __init__(self, url: str, store_path: Path, namespace: str = DEFAULT_NAMESPACE) -> None:
        """Serve commands from the broker at ``url``; keep effects in ``store_path``.

        ``namespace``: the engine's broker namespace (its ``SAGALOOM_NATS_NAMESPACE``).
        """
        self.url = url
        self.namespace = namespace
        self.store_path = store_path
        self.store = Store(store_path)
        self.faults: dict[str, str] = {}
        """Test faults by business key (see the module's docstring)."""
        self._commands: dict[str, tuple[str, str]] = {}  # correlation id -> (op, business key)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._main, name="svc-warehouse", daemon=True)

    def start(self) -> Warehouse:
        """Start consuming in the background."""
        self._thread.start()
        self._ready.wait(10)
        return self

    def close(self) -> None:
        """Stop consuming (the relay stops with it) and close the store."""
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(15)
        self.store.close()

    def _main(self) -> None:
        asyncio.run(self._run())

    async def _run(self) -> None:
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        service = SagaService(sqlite_engine(self.store_path), metadata=METADATA,
                              namespace=self.namespace)  # fmt: skip
        service.relay = _FaultyRelay(service.outbox, self)
        service.command("warehouse.pack")(self.pack)
        service.command("warehouse.unpack", undo=True)(self.unpack)
        self._ready.set()
        try:
            await service.consume(self.url, durable="warehouse", stop=self._stop)
        finally:
            await service.engine.dispose()

    async def pack(self, body: Pack, tx: AsyncSession, command: CommandInfo) -> dict[str, Any]:
        """Pack an order once; refuse more than :data:`MAX_PACK` items."""
        key = body.order_id
        self._commands[command.correlation_id] = ("pack", key)
        await Books.received(tx, "pack", key, command.key)
        record = await Books.record(tx, key)
        if record is not None and record["status"] == "undone":
            raise Refused(f"order {key} was already unpacked", status=409)
        if body.quantity > MAX_PACK:
            raise Refused(f"{body.quantity} items do not fit one parcel (max {MAX_PACK})", 409)
        size = len(body.packing_list.encode())
        if record is not None:
            return {"id": record["id"], "order_id": key, "packing_list_bytes": size}
        parcel = await Books.next_id(tx, "parcel")
        await Books.put(tx, key, parcel, "active", body.model_dump(exclude={"packing_list"}))
        await Books.log(tx, "do", key, command.key, None)
        return {"id": parcel, "order_id": key, "packing_list_bytes": size}

    async def unpack(self, body: OrderRef, tx: AsyncSession, command: CommandInfo,
                     packed: Answer) -> dict[str, str]:  # fmt: skip
        """Unpack what the pack with this saga's key packed."""
        key = body.order_id
        self._commands[command.correlation_id] = ("unpack", key)
        record = await Books.record(tx, key)
        if record is not None and record["status"] == "active":
            await Books.put(tx, key, record["id"], "undone", record["payload"])
            await Books.log(tx, "undo", key, command.key, None)
        return {"order_id": key}

    async def publish(self, publish: NatsPublish, subject: str, payload: bytes,
                      headers: dict[str, str]) -> None:  # fmt: skip
        """Publish a reply from the outbox, through the test faults of its business key."""
        reply = json.loads(payload)
        op, key = self._commands.get(str(reply.get("correlation_id")), ("", ""))
        faults = self.faults.get(key, "").split(",")
        if op == "unpack" and "mute-undo" in faults:
            return  # stopped answering undo commands (applied, no reply)
        if op == "unpack" and "slow-undo" in faults:
            await asyncio.sleep(SLOW_UNDO_SECONDS)
        if op == "unpack" and "refuse-undo" in faults:
            refused = {**reply, "ok": False, "data": {}, "reason": "unpack refused (injected)"}
            payload = json.dumps(refused).encode()
        if op == "pack" and "no-reply" in faults:
            return  # (its undo is still answered)
        if "bad-token" in faults:
            payload = json.dumps({**reply, "token": "forged"}).encode()
        if "reply-twice" in faults:  # two without ids: the broker stores both
            for _ in range(2):
                await publish(subject, payload, {})
            return
        await publish(subject, payload, headers)


class _FaultyRelay(Relay):
    """The toolkit's relay, publishing through the warehouse's test faults."""

    def __init__(self, outbox: Any, warehouse: Warehouse) -> None:
        self._warehouse = warehouse
        self._publish: NatsPublish | None = None
        super().__init__(outbox)

    @property
    def publish(self) -> NatsPublish | None:
        """The broker publish, wrapped in the faults (set by the consumer when it connects)."""
        inner = self._publish
        if inner is None:
            return None

        async def faulty(subject: str, payload: bytes, headers: dict[str, str]) -> None:
            await self._warehouse.publish(inner, subject, payload, headers)

        return faulty

    @publish.setter
    def publish(self, value: NatsPublish | None) -> None:
        self._publish = value
