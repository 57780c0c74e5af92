"""Payloads of any size: a payload over the threshold goes to a store, history holds a reference.

Built on the SDK's external storage (``temporalio.converter.ExternalStorage``): the plugin and
:func:`sagaloom.client.connect` give their data converter a :class:`PayloadStore` chosen by the
settings table (``SAGALOOM_PAYLOAD_STORE``: ``auto``, ``nats``, ``s3``, ``off``). The embedded
default is NATS JetStream's object store on the broker (:class:`NatsPayloadDriver`); a cluster
uses S3 through the SDK's own ``S3StorageDriver``. Encryption still holds: the codec encrypts a
payload before it is stored. Broker messages too large for the broker travel as references
(:func:`send_body`, :func:`read_body`). The :class:`PayloadSweeper` removes what no history
refers to any more.
"""

from sagaloom._public import publish as _publish
from sagaloom.storage._bodies import BODY_TTL, HEADROOM, read_body, send_body
from sagaloom.storage._display import INLINE_LIMIT, resolve_references
from sagaloom.storage._errors import PayloadMissing, PayloadStoreError, PayloadStoreUnavailable
from sagaloom.storage._naming import NO_WORKFLOW, ObjectName, StoredObject, Sweepable
from sagaloom.storage._nats_store import (
    CHUNK_BYTES,
    DEFAULT_BUCKET,
    REUSE_WITHIN,
    NatsPayloadDriver,
)
from sagaloom.storage._s3 import S3Objects, s3_driver
from sagaloom.storage._stores import DEFAULT_THRESHOLD, TEMPORAL_PAYLOAD_LIMIT, PayloadStore
from sagaloom.storage._sweeper import DEFAULT_GRACE, PayloadSweeper, Sweep

__all__ = [
    "BODY_TTL",
    "CHUNK_BYTES",
    "DEFAULT_BUCKET",
    "DEFAULT_GRACE",
    "DEFAULT_THRESHOLD",
    "HEADROOM",
    "INLINE_LIMIT",
    "NO_WORKFLOW",
    "REUSE_WITHIN",
    "TEMPORAL_PAYLOAD_LIMIT",
    "NatsPayloadDriver",
    "ObjectName",
    "PayloadMissing",
    "PayloadStore",
    "PayloadStoreError",
    "PayloadStoreUnavailable",
    "PayloadSweeper",
    "S3Objects",
    "StoredObject",
    "Sweep",
    "Sweepable",
    "read_body",
    "resolve_references",
    "s3_driver",
    "send_body",
]

_publish(globals(), __all__, __name__)
