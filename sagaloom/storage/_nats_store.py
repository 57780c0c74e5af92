"""The embedded default payload store: NATS JetStream's object store, on the broker sagaloom runs.

One bucket (``sagaloom-payloads``), file storage; objects are chunked by JetStream, so a payload
of any size passes the broker's 1 MB message limit. Every worker process and client shares it.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext, api
from nats.js.object_store import (
    OBJ_CHUNKS_PRE_TEMPLATE,
    OBJ_META_PRE_TEMPLATE,
    OBJ_STREAM_TEMPLATE,
    ObjectStore,
)
from temporalio.api.common.v1 import Payload
from temporalio.converter import (
    StorageDriver,
    StorageDriverClaim,
    StorageDriverRetrieveContext,
    StorageDriverStoreContext,
    StorageDriverWorkflowInfo,
)

from sagaloom.storage._errors import PayloadMissing, PayloadStoreUnavailable
from sagaloom.storage._naming import NO_WORKFLOW, ObjectName, StoredObject, digest_of

__all__ = [
    "CHUNK_BYTES",
    "DEFAULT_BUCKET",
    "REUSE_WITHIN",
    "NatsPayloadDriver",
]

log = logging.getLogger("sagaloom.storage")

T = TypeVar("T")

DEFAULT_BUCKET = "sagaloom-payloads"
"""The object store bucket (and the S3 bucket's default name)."""
CHUNK_BYTES = 512 * 1024
"""Bytes per JetStream message of an object (under the server's 1 MB message limit)."""
REUSE_WITHIN = timedelta(minutes=30)
"""An identical object stored more recently than this is reused, not written again.

Older copies are written again, which renews their age: the sweeper only removes objects older
than twice this whose saga is gone, so a saga that reuses an object never loses it to a sweep.
"""
_TRANSIENT: tuple[type[BaseException], ...] = (
    nats.errors.ConnectionClosedError,
    nats.errors.ConnectionReconnectingError,
    nats.errors.NoServersError,
    nats.errors.TimeoutError,
    nats.errors.StaleConnectionError,
    nats.js.errors.ServiceUnavailableError,
    asyncio.TimeoutError,
    OSError,
)


class NatsPayloadDriver(StorageDriver):
    """Stores payloads in a NATS JetStream object store bucket (the SDK's driver interface).

    Content-addressed within a saga: the object's name is ``<namespace>/<workflow id>/<sha256>``
    (:class:`~sagaloom.storage.ObjectName`), so storing the same bytes again for the same saga
    writes nothing, and a retried write is harmless. Reads check the digest.

    The store being unreachable, or stopping mid-operation, makes an operation wait and retry
    for up to ``wait`` (an attempt never waits longer than that), then raise
    :class:`PayloadStoreUnavailable` (the step or workflow task is retried; nothing is lost).
    A referenced object that is gone raises :class:`PayloadMissing`, naming the saga.
    """

    def __init__(
        self,
        url: str,
        bucket: str = DEFAULT_BUCKET,
        *,
        name: str = "sagaloom.nats",
        wait: timedelta = timedelta(seconds=30),
    ) -> None:
        """Prepare (not connect) a driver.

        Args:
            url: The NATS server (``nats://host:port``).
            bucket: The object store bucket; created on first use.
            name: The driver's name in references (keep it: histories record it).
            wait: How long an operation waits for an unreachable store.
        """
        self.url, self.bucket, self._name, self._wait = url, bucket, name, wait
        self._connections: dict[asyncio.AbstractEventLoop, tuple[NatsClient, ObjectStore]] = {}
        self._lock: dict[asyncio.AbstractEventLoop, asyncio.Lock] = {}

    def name(self) -> str:
        """See base class."""
        return self._name

    def type(self) -> str:
        """See base class."""
        return "sagaloom.nats-object-store"

    def where(self) -> str:
        """The store in words, for messages."""
        return f"NATS object store {self.bucket!r} at {self.url}"

    # -- connection -------------------------------------------------------------------------

    async def _store(self) -> ObjectStore:
        """The bucket, connected in this event loop (one connection per loop, made once)."""
        loop = asyncio.get_running_loop()
        found = self._connections.get(loop)
        if found is not None and not found[0].is_closed:
            return found[1]
        async with self._lock.setdefault(loop, asyncio.Lock()):
            found = self._connections.get(loop)
            if found is not None and not found[0].is_closed:
                return found[1]
            nc = await nats.connect(
                self.url,
                name="sagaloom-payloads",
                max_reconnect_attempts=-1,
                reconnect_time_wait=0.5,
                connect_timeout=3,
                allow_reconnect=True,
                error_cb=_quiet,
            )
            js = nc.jetstream(timeout=10)
            try:
                store = await js.object_store(self.bucket)
            except nats.js.errors.BucketNotFoundError:
                store = await js.create_object_store(
                    self.bucket,
                    config=api.ObjectStoreConfig(
                        description="sagaloom: payloads over the threshold, by saga",
                        storage=api.StorageType.FILE,
                    ),
                )
            self._connections[loop] = (nc, store)
            return store

    async def aclose(self) -> None:
        """Close this loop's connection."""
        found = self._connections.pop(asyncio.get_running_loop(), None)
        if found is not None and not found[0].is_closed:
            await found[0].close()

    async def _patiently(self, what: str, op: Callable[[ObjectStore], Awaitable[T]]) -> T:
        """Run ``op`` on the bucket, retrying while the store is unreachable, up to the wait."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._wait.total_seconds()
        pause, said = 0.2, False
        while True:
            try:
                # nats-py's first connect retries forever with unlimited reconnects, and an
                # object's read waits for its chunks without a deadline: bound both.
                left = max(deadline - loop.time(), 0.1)
                store = await asyncio.wait_for(self._store(), timeout=left)
                attempt = self._wait.total_seconds()
                return await asyncio.wait_for(op(store), timeout=attempt)
            except _TRANSIENT as err:
                if loop.time() + pause > deadline:
                    raise PayloadStoreUnavailable(
                        f"{what}: the {self.where()} did not answer within "
                        f"{self._wait.total_seconds():g}s ({type(err).__name__}: {err}); "
                        "it is retried, nothing is lost"
                    ) from None
                if not said:
                    log.warning("%s: %s unreachable, retrying", what, self.where())
                    said = True
                await asyncio.sleep(pause)
                pause = min(pause * 2, 2.0)

    # -- the driver -------------------------------------------------------------------------

    async def store(
        self, context: StorageDriverStoreContext, payloads: Sequence[Payload]
    ) -> list[StorageDriverClaim]:
        """Store each payload (unless a recent identical copy is there); claims in order."""
        target = context.target
        namespace = (target.namespace if target is not None else "") or "default"
        workflow_id = (
            target.id if isinstance(target, StorageDriverWorkflowInfo) and target.id else None
        )
        claims = []
        for payload in payloads:
            data = payload.SerializeToString()
            name = ObjectName(namespace, workflow_id or NO_WORKFLOW, digest_of(data))
            await self._patiently(f"storing {name}", _putting(name, data))
            claims.append(
                StorageDriverClaim(
                    claim_data={"bucket": self.bucket, "name": str(name), "sha256": name.digest}
                )
            )
        return claims

    async def retrieve(
        self, context: StorageDriverRetrieveContext, claims: Sequence[StorageDriverClaim]
    ) -> list[Payload]:
        """Read each claimed payload back, checking its digest.

        Raises:
            PayloadMissing: an object is gone or altered (names the saga and the object).
            PayloadStoreUnavailable: the store did not answer within the wait.
        """
        return [await self.read(claim.claim_data) for claim in claims]

    async def read(self, claim: Mapping[str, str]) -> Payload:
        """One claim's payload (the codec server uses this too)."""
        data = dict(claim)
        name, digest = data["name"], data.get("sha256", "")
        bucket = data.get("bucket", self.bucket)
        if bucket != self.bucket:
            raise PayloadMissing(
                f"{name} is in bucket {bucket!r}; this process reads {self.bucket!r}: set "
                "SAGALOOM_PAYLOAD_BUCKET the same on every client and worker"
            )
        raw = await self._patiently(f"reading {name}", lambda s: _get(s, name))
        if raw is None or (digest and digest_of(raw) != digest):
            parsed = ObjectName.parse(name)
            saga = parsed.workflow_id if parsed else "?"
            why = "is gone" if raw is None else "does not match its digest"
            raise PayloadMissing(
                f"the stored payload {name} of saga {saga!r} {why} in the {self.where()}: "
                "it was removed (retention passed, or by hand); restore it, or terminate the run"
            )
        payload = Payload()
        payload.ParseFromString(raw)
        return payload

    # -- what the sweeper needs -------------------------------------------------------------

    async def objects(self) -> list[StoredObject]:
        """Every object in the bucket (an empty bucket: none)."""

        async def listing(store: ObjectStore) -> list[api.ObjectInfo]:
            try:
                return await store.list(ignore_deletes=True)
            except nats.js.errors.NotFoundError:
                return []

        infos = await self._patiently("listing payloads", listing)
        found = []
        for info in infos:
            name = ObjectName.parse(info.name)
            if name is not None:
                found.append(
                    StoredObject(
                        info.name,
                        name.namespace,
                        name.workflow_id,
                        _parse_time(info.mtime),
                        info.nuid,
                    )
                )
        return found

    async def delete_unless_rewritten(self, obj: StoredObject) -> bool:
        """Delete ``obj`` only if it is still the copy listed (no saga wrote it again since).

        The delete is conditional on the object's last meta message (JetStream's expected last
        subject sequence), so a write racing the sweep wins.

        Returns:
            Whether it was deleted.
        """
        return await self._patiently(
            f"deleting {obj.name}", lambda s: _delete_if(s, self.bucket, obj)
        )


async def _quiet(err: Exception) -> None:
    """Connection errors: the operation that meets one says so once (nats-py would trace)."""
    log.debug("payload store connection: %s: %s", type(err).__name__, err)


def _parse_time(raw: str | None) -> datetime | None:
    if not raw:
        return None
    try:
        return datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        return None


def _putting(name: ObjectName, data: bytes) -> Callable[[ObjectStore], Awaitable[None]]:
    async def put(store: ObjectStore) -> None:
        await _put(store, name, data)

    return put


async def _put(store: ObjectStore, name: ObjectName, data: bytes) -> None:
    try:
        info = await store.get_info(str(name))
        written = _parse_time(info.mtime)
        if written is not None and datetime.now(UTC) - written < REUSE_WITHIN:
            return  # a recent identical copy (same name, same digest)
    except nats.js.errors.ObjectNotFoundError:
        pass
    meta = api.ObjectMeta(name=str(name), options=api.ObjectMetaOptions(max_chunk_size=CHUNK_BYTES))
    await store.put(str(name), data, meta=meta)


async def _get(store: ObjectStore, name: str) -> bytes | None:
    sink = io.BytesIO()
    try:
        await store.get(name, writeinto=sink)
    except nats.js.errors.ObjectNotFoundError:
        return None
    except nats.js.errors.DigestMismatchError:
        return b""  # fails the digest check: reported as altered
    return sink.getvalue()


async def _delete_if(store: ObjectStore, bucket: str, obj: StoredObject) -> bool:
    js: JetStreamContext = store._js
    stream = OBJ_STREAM_TEMPLATE.format(bucket=bucket)
    encoded = base64.urlsafe_b64encode(obj.name.encode()).decode()
    meta_subject = OBJ_META_PRE_TEMPLATE.format(bucket=bucket, obj=encoded)
    try:
        last = await js.get_last_msg(stream, meta_subject)
    except nats.js.errors.NotFoundError:
        return False
    info = json.loads(last.data or b"{}")
    if info.get("deleted") or info.get("nuid") != obj.version:
        return False
    gone = dict(info, deleted=True, size=0, chunks=0, digest="", mtime="")
    try:
        await js.publish(
            meta_subject,
            json.dumps(gone).encode(),
            headers={
                api.Header.ROLLUP: "sub",
                "Nats-Expected-Last-Subject-Sequence": str(last.seq),
            },
        )
    except nats.js.errors.BadRequestError:
        return False  # written again since it was listed: keep it
    chunks = OBJ_CHUNKS_PRE_TEMPLATE.format(bucket=bucket, obj=obj.version)
    await js.purge_stream(stream, subject=chunks)
    return True
