"""Broker messages of any size: a body over the server's message limit travels as a reference.

The body goes to the broker's own JetStream object store (bucket ``<namespace>-bodies``), named
``<Temporal namespace>/<saga id>/<sha256>`` (``-`` where unknown); the bucket's TTL is the
streams' own age (:data:`BODY_TTL`), so a body lives as long as a message can refer to it. The
message carries :data:`~sagaloom._wire._protocol.BODY_REF_HEADER` and an empty body. Whoever
reads the message (the participant toolkit, the workers' reply consumer, a trigger) reads the
body back and checks its digest. The participant protocol documents it for hand-written
participants.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

import nats.js.errors
from nats.js import JetStreamContext, api
from nats.js.object_store import ObjectStore

from sagaloom._wire._protocol import BODY_BYTES_HEADER, BODY_DIGEST_HEADER, BODY_REF_HEADER
from sagaloom.storage._errors import PayloadMissing
from sagaloom.storage._naming import NO_WORKFLOW, ObjectName, digest_of
from sagaloom.storage._nats_store import CHUNK_BYTES, REUSE_WITHIN, _parse_time

__all__ = ["BODY_TTL", "HEADROOM", "read_body", "send_body"]

HEADROOM = 64 * 1024
"""Bytes of a message kept for its headers: a body larger than the limit less this is stored."""
BODY_TTL = timedelta(days=7)
"""How long a stored body lives: the commands, replies and dead-letter streams' age."""


async def _bucket(js: JetStreamContext, bucket: str) -> ObjectStore:
    try:
        return await js.object_store(bucket)
    except nats.js.errors.BucketNotFoundError:
        return await js.create_object_store(
            bucket,
            config=api.ObjectStoreConfig(
                description="sagaloom: broker message bodies over the message limit",
                storage=api.StorageType.FILE,
                ttl=BODY_TTL.total_seconds(),
            ),
        )


async def send_body(
    js: JetStreamContext,
    bucket: str,
    data: bytes,
    headers: Mapping[str, str],
    *,
    namespace: str | None,
    saga: str | None,
    limit: int | None = None,
) -> tuple[bytes, dict[str, str]]:
    """The body and headers to publish: as given, or a reference when the body is too large.

    Args:
        js: The publisher's JetStream context (its connection knows the server's limit).
        bucket: The bodies bucket (``BrokerNames.bodies_bucket``).
        data: The body.
        headers: The message's headers.
        namespace: The saga's Temporal namespace (None: unknown).
        saga: The saga's workflow id (None: unknown; the body is then never swept).
        limit: The message limit (default: the server's ``max_payload``).
    """
    most = (limit if limit is not None else js._nc.max_payload) - HEADROOM
    if len(data) <= most:
        return data, dict(headers)
    name = ObjectName(namespace or "default", saga or NO_WORKFLOW, digest_of(data))
    store = await _bucket(js, bucket)
    try:
        info = await store.get_info(str(name))
        written = _parse_time(info.mtime)
        fresh = written is not None and datetime.now(UTC) - written < REUSE_WITHIN
    except nats.js.errors.ObjectNotFoundError:
        fresh = False
    if not fresh:  # absent, or old enough that its TTL may end soon: written (again)
        meta = api.ObjectMeta(
            name=str(name), options=api.ObjectMetaOptions(max_chunk_size=CHUNK_BYTES)
        )
        await store.put(str(name), data, meta=meta)
    return b"", {
        **headers,
        BODY_REF_HEADER: f"{bucket}/{name}",
        BODY_DIGEST_HEADER: name.digest,
        BODY_BYTES_HEADER: str(len(data)),
    }


async def read_body(js: JetStreamContext, data: bytes, headers: Mapping[str, str] | None) -> bytes:
    """A message's body: its own, or the stored one its reference names.

    Raises:
        PayloadMissing: the referenced body is gone or altered (names the object).
        nats.errors.Error: the broker did not answer (the message is redelivered).
    """
    ref = (headers or {}).get(BODY_REF_HEADER)
    if not ref:
        return data
    bucket, _, name = ref.partition("/")
    try:
        store = await js.object_store(bucket)
    except (nats.js.errors.BucketNotFoundError, nats.js.errors.InvalidBucketNameError):
        raise PayloadMissing(f"message body {ref}: no bucket {bucket!r}") from None
    sink = io.BytesIO()
    try:
        await store.get(name, writeinto=sink)
    except (nats.js.errors.ObjectNotFoundError, nats.js.errors.DigestMismatchError) as err:
        raise PayloadMissing(f"message body {ref}: {type(err).__name__}") from None
    body = sink.getvalue()
    expected = (headers or {}).get(BODY_DIGEST_HEADER)
    if expected and digest_of(body) != expected:
        raise PayloadMissing(f"message body {ref} does not match its {BODY_DIGEST_HEADER}")
    return body
