"""Payloads in S3 on a cluster: the SDK's own ``S3StorageDriver``, on a client opened on first use.

Needs the ``s3`` extra (``aioboto3``). Credentials and region come the standard AWS way
(environment, profile, instance role); ``endpoint`` points at an S3-compatible server instead
(MinIO, or moto's server in the tests).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote

from temporalio.contrib.aws.s3driver import S3StorageDriver, S3StorageDriverClient

from sagaloom.storage._errors import PayloadStoreError
from sagaloom.storage._naming import NO_WORKFLOW, StoredObject
from sagaloom.storage._nats_store import REUSE_WITHIN

__all__ = ["S3Objects", "s3_driver"]


class S3Objects(S3StorageDriverClient):
    """An aioboto3 S3 client behind the SDK driver's client interface, and the sweeper's listing.

    The aioboto3 client is opened on first use in each event loop. ``object_exists`` reports an
    object older than :data:`~sagaloom.storage._nats_store.REUSE_WITHIN` as absent, so the SDK
    driver writes it again and renews its age (the sweeper's rule, as for NATS). ``prefix`` is
    put before every key (keep it while any run refers to a stored payload).
    """

    def __init__(
        self,
        bucket: str,
        *,
        endpoint: str | None = None,
        region: str | None = None,
        prefix: str = "",
    ) -> None:
        """Prepare (not open) the client of ``bucket`` (the sweeper's; the driver names its own)."""
        self.bucket, self.endpoint, self.region, self.prefix = bucket, endpoint, region, prefix
        self._open: dict[asyncio.AbstractEventLoop, tuple[Any, Any]] = {}

    async def _s3(self) -> Any:
        loop = asyncio.get_running_loop()
        found = self._open.get(loop)
        if found is not None:
            return found[1]
        try:
            import aioboto3
            from aiobotocore.config import AioConfig
        except ImportError as err:  # pragma: no cover - the extra is missing
            raise PayloadStoreError(
                "SAGALOOM_PAYLOAD_STORE=s3 needs aioboto3: pip install 'sagaloom[s3]'"
            ) from err
        config = AioConfig(
            retries={"mode": "standard", "max_attempts": 8},
            connect_timeout=5,
            read_timeout=60,
        )
        manager = aioboto3.Session().client(
            "s3", endpoint_url=self.endpoint, region_name=self.region, config=config
        )
        client = await manager.__aenter__()
        self._open[loop] = (manager, client)
        return client

    async def aclose(self) -> None:
        """Close this loop's client."""
        found = self._open.pop(asyncio.get_running_loop(), None)
        if found is not None:
            await found[0].__aexit__(None, None, None)

    def where(self) -> str:
        """The bucket in words."""
        at = f" at {self.endpoint}" if self.endpoint else ""
        return f"S3 bucket {self.bucket!r}{at}"

    def describe(self) -> Mapping[str, str]:
        """Endpoint and region, for the driver's error messages."""
        return {k: v for k, v in (("endpoint", self.endpoint), ("region", self.region)) if v}

    async def object_exists(self, *, bucket: str, key: str) -> bool:
        """Whether a recent copy is there (an old one is written again)."""
        from botocore.exceptions import ClientError

        try:
            head = await (await self._s3()).head_object(Bucket=bucket, Key=self.prefix + key)
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") in ("404", "NoSuchKey"):
                return False
            raise
        written: datetime = head["LastModified"]
        return datetime.now(UTC) - written < REUSE_WITHIN

    async def put_object(self, *, bucket: str, key: str, data: bytes) -> None:
        """Write an object."""
        await (await self._s3()).put_object(Bucket=bucket, Key=self.prefix + key, Body=data)

    async def get_object(self, *, bucket: str, key: str) -> bytes:
        """Read an object."""
        response = await (await self._s3()).get_object(Bucket=bucket, Key=self.prefix + key)
        async with response["Body"] as body:
            data: bytes = await body.read()
        return data

    async def objects(self) -> list[StoredObject]:
        """Every payload object under the prefix, with the saga each belongs to."""
        s3 = await self._s3()
        found = []
        paginator = s3.get_paginator("list_objects_v2")
        async for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix + "v0/"):
            for item in page.get("Contents", []):
                key = item["Key"][len(self.prefix) :]
                namespace, workflow_id = _owner(key)
                found.append(
                    StoredObject(key, namespace, workflow_id, item["LastModified"], item["ETag"])
                )
        return found

    async def delete_unless_rewritten(self, obj: StoredObject) -> bool:
        """Delete ``obj`` if it is still the copy listed (same ETag and time)."""
        from botocore.exceptions import ClientError

        s3 = await self._s3()
        try:
            head = await s3.head_object(Bucket=self.bucket, Key=self.prefix + obj.name)
        except ClientError:
            return False
        if head["ETag"] != obj.version or head["LastModified"] != obj.written:
            return False
        await s3.delete_object(Bucket=self.bucket, Key=self.prefix + obj.name)
        return True


def _owner(key: str) -> tuple[str, str]:
    """``(namespace, workflow id)`` of an SDK driver key (``v0/ns/<ns>/wt/<t>/wi/<id>/...``)."""
    parts = key.split("/")
    namespace = workflow_id = ""
    for label, value in itertools.pairwise(parts):
        if label == "ns" and not namespace:
            namespace = unquote(value)
        elif label == "wi" and not workflow_id:
            workflow_id = unquote(value)
    return namespace or "null", workflow_id if workflow_id not in ("", "null") else NO_WORKFLOW


def s3_driver(
    bucket: str, *, endpoint: str | None = None, region: str | None = None, prefix: str = ""
) -> tuple[S3StorageDriver, S3Objects]:
    """The SDK's S3 driver on a lazily opened client, and that client (for the sweeper)."""
    objects = S3Objects(bucket, endpoint=endpoint, region=region, prefix=prefix)
    return S3StorageDriver(client=objects, bucket=bucket, max_payload_size=2**31), objects
