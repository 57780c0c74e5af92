"""Stored payloads for a reader: the codec server shows what a history's reference points to."""

from __future__ import annotations

import json
from collections.abc import Sequence

from temporalio.api.common.v1 import Payload
from temporalio.converter import ExternalStorage

from sagaloom.storage._errors import PayloadStoreError

__all__ = ["INLINE_LIMIT", "resolve_references"]

INLINE_LIMIT = 1_000_000
"""Largest stored payload the codec server returns to the Web UI inline; a larger one is shown
as a note saying its size and how to read it."""


def _note(text: str) -> Payload:
    return Payload(metadata={"encoding": b"json/plain"}, data=json.dumps(text).encode())


def stored_size(payload: Payload) -> int | None:
    """The size of what ``payload`` refers to in a store; None when it is no reference."""
    if not payload.external_payloads:
        return None
    return sum(e.size_bytes for e in payload.external_payloads)


async def resolve_references(
    storage: ExternalStorage, payloads: Sequence[Payload], *, inline: int = INLINE_LIMIT
) -> list[Payload]:
    """Each payload as it is, or, when it refers to a store, the stored payload (still encoded).

    A stored payload over ``inline`` bytes, or one the store cannot give back, becomes a short
    text saying so (the reader's page stays small; ``saga show`` reads it whole).
    """
    resolved = []
    for payload in payloads:
        size = stored_size(payload)
        if size is None:
            resolved.append(payload)
        elif size > inline:
            resolved.append(
                _note(
                    f"a stored payload of {size:,} bytes, too large to show here "
                    f"(over {inline:,}): read it with `saga show <workflow id>`"
                )
            )
        else:
            try:
                # the SDK's own retrieval (driver by name, claim from the reference)
                (got,) = await storage._retrieve_payload_sequence([payload])
            except PayloadStoreError as err:
                got = _note(f"stored payload unavailable: {err}")
            resolved.append(got)
    return resolved
