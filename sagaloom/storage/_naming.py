"""Where a stored payload lives in the embedded store, and which saga it belongs to (pure).

An object is named ``<namespace>/<workflow id>/<sha256 of its bytes>``: content-addressed
within one saga (the same document handed to three steps is stored once), and the sweeper can
tell from the name alone whose history refers to it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

__all__ = ["NO_WORKFLOW", "ObjectName", "StoredObject", "Sweepable", "digest_of"]

NO_WORKFLOW = "-"
"""The workflow part of a payload stored with no workflow to belong to (never swept)."""


def digest_of(data: bytes) -> str:
    """The lower-case SHA-256 hex digest of ``data``."""
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class ObjectName:
    """A stored payload's name: namespace, workflow id, digest."""

    namespace: str
    workflow_id: str
    digest: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.workflow_id}/{self.digest}"

    @classmethod
    def parse(cls, name: str) -> ObjectName | None:
        """The parts of ``name``, or None when it is not a payload's name.

        A workflow id may hold ``/``; a namespace may not (Temporal's rule) and a digest is 64
        hex digits, so the first and the last ``/`` split it.
        """
        namespace, sep, rest = name.partition("/")
        workflow_id, sep2, digest = rest.rpartition("/")
        if not (sep and sep2 and namespace and workflow_id) or len(digest) != 64:
            return None
        if any(c not in "0123456789abcdef" for c in digest):
            return None
        return cls(namespace, workflow_id, digest)

    @property
    def sweepable(self) -> bool:
        """Whether a saga's history owns it (else only a bucket TTL removes it)."""
        return self.workflow_id != NO_WORKFLOW


@dataclass(frozen=True)
class StoredObject:
    """One object as a store lists it for the sweeper."""

    name: str
    """Its name (NATS) or key (S3)."""
    namespace: str
    workflow_id: str
    """The saga whose history refers to it (:data:`NO_WORKFLOW`: none)."""
    written: datetime | None
    """When it was last written (None: unknown, so never swept)."""
    version: str
    """The copy listed (NATS: its nuid; S3: its ETag): a delete only removes this copy."""


class Sweepable(Protocol):
    """A store the sweeper can list and delete from."""

    def where(self) -> str:
        """The store in words."""
        ...

    async def objects(self) -> list[StoredObject]:
        """Every payload object it holds."""
        ...

    async def delete_unless_rewritten(self, obj: StoredObject) -> bool:
        """Delete ``obj`` if it is still the copy listed; whether it was."""
        ...
