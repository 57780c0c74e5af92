"""Which payload store a process uses, from the settings table: one rule for clients and workers."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from temporalio.converter import ExternalStorage, StorageDriver

from sagaloom._config._settings import setting
from sagaloom.storage._naming import Sweepable
from sagaloom.storage._nats_store import DEFAULT_BUCKET, NatsPayloadDriver
from sagaloom.storage._s3 import S3Objects, s3_driver

__all__ = ["DEFAULT_THRESHOLD", "TEMPORAL_PAYLOAD_LIMIT", "PayloadStore"]

DEFAULT_THRESHOLD = 256 * 1024
"""Payloads this size or larger go to the store (the SDK's own default).

Half of the server's 512 KB payload warning and an eighth of its 2 MB refusal, so a saga's
report, which gathers several outputs, stays well under both; below it nothing changes.
"""
TEMPORAL_PAYLOAD_LIMIT = 2 * 1024 * 1024
"""The largest payload Temporal accepts in a history (the server's blob size limit)."""

Kind = Literal["nats", "s3", "off"]


@dataclass(frozen=True)
class PayloadStore:
    """Where payloads over the threshold go: NATS JetStream's object store, S3, or nowhere.

    Every client and worker of a namespace must use the same store and bucket, as they use the
    same encryption keys: a reference written by one is read by the others.
    """

    kind: Kind = "off"
    """``nats`` (the embedded default), ``s3`` (clusters), or ``off``."""
    nats_url: str | None = None
    """The NATS server of the ``nats`` store."""
    bucket: str = DEFAULT_BUCKET
    """The object store bucket (``nats``) or the S3 bucket (``s3``)."""
    prefix: str = ""
    """``s3``: put before every key."""
    endpoint: str | None = None
    """``s3``: an S3-compatible server instead of AWS."""
    region: str | None = None
    """``s3``: the region (None: the standard AWS configuration's, ``AWS_REGION``...)."""
    threshold: int = DEFAULT_THRESHOLD
    """Payloads this size or larger (bytes, encoded) are stored."""
    _built: dict[str, tuple[ExternalStorage, StorageDriver, S3Objects | None]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    @classmethod
    def from_settings(
        cls,
        choice: str,
        *,
        nats_url: str | None,
        bucket: str = DEFAULT_BUCKET,
        prefix: str = "",
        endpoint: str | None = None,
        region: str | None = None,
        threshold: int = DEFAULT_THRESHOLD,
    ) -> PayloadStore:
        """The store ``SAGALOOM_PAYLOAD_STORE`` names (``auto``: NATS when a broker is set).

        Raises:
            ValueError: ``nats`` without a NATS URL.
        """
        kind: Kind
        if choice == "auto":
            kind = "nats" if nats_url else "off"
        elif choice in ("nats", "s3", "off"):
            kind = choice  # type: ignore[assignment]
        else:
            raise ValueError(f"SAGALOOM_PAYLOAD_STORE: {choice!r} is not auto, nats, s3 or off")
        if kind == "nats" and not nats_url:
            raise ValueError("SAGALOOM_PAYLOAD_STORE=nats needs SAGALOOM_NATS_URL")
        return cls(kind, nats_url, bucket, prefix, endpoint, region, threshold)

    @classmethod
    def from_env(cls, env: Mapping[str, str], nats_url: str | None = None) -> PayloadStore:
        """The store the environment names (the settings table's ``SAGALOOM_PAYLOAD_*`` rows)."""
        return cls.from_settings(
            setting("payload_store").read(env),
            nats_url=nats_url or setting("nats_url").read(env),
            bucket=setting("payload_bucket").read(env),
            prefix=setting("payload_prefix").read(env),
            endpoint=setting("payload_endpoint").read(env),
            threshold=setting("payload_threshold").read(env),
        )

    @property
    def on(self) -> bool:
        """Whether payloads over the threshold are stored."""
        return self.kind != "off"

    def _build(self) -> tuple[ExternalStorage, StorageDriver, S3Objects | None]:
        built = self._built.get("it")
        if built is None:
            driver: StorageDriver
            objects: S3Objects | None = None
            if self.kind == "nats":
                assert self.nats_url is not None
                driver = NatsPayloadDriver(self.nats_url, self.bucket)
            else:
                driver, objects = s3_driver(
                    self.bucket, endpoint=self.endpoint, region=self.region, prefix=self.prefix
                )
            storage = ExternalStorage(drivers=[driver], payload_size_threshold=self.threshold)
            built = self._built["it"] = (storage, driver, objects)
        return built

    def external_storage(self) -> ExternalStorage | None:
        """The SDK's external storage for a data converter (None when off); built once."""
        return self._build()[0] if self.on else None

    def driver(self) -> StorageDriver:
        """The store's driver (for the codec server and the sweeper)."""
        return self._build()[1]

    def sweepable(self) -> Sweepable:
        """What the sweeper lists and deletes from."""
        _storage, driver, objects = self._build()
        if objects is not None:
            return objects
        assert isinstance(driver, NatsPayloadDriver)
        return driver

    def where(self) -> str:
        """The store in words."""
        if self.kind == "nats":
            return f"NATS object store {self.bucket!r} at {self.nats_url}"
        if self.kind == "s3":
            at = f" at {self.endpoint}" if self.endpoint else ""
            return f"S3 bucket {self.bucket!r}{at}"
        return "no payload store"
