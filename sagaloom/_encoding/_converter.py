"""How sagaloom writes failures into workflow history: expected failures without tracebacks."""

from __future__ import annotations

import dataclasses
from typing import Any

import temporalio.api.common.v1
import temporalio.api.failure.v1
from temporalio.contrib.pydantic import PydanticPayloadConverter, pydantic_data_converter
from temporalio.converter import (
    CompositePayloadConverter,
    DataConverter,
    DefaultFailureConverter,
    EncodingPayloadConverter,
    ExternalStorage,
    PayloadCodec,
    PayloadConverter,
)
from temporalio.exceptions import ApplicationError

__all__ = [
    "DATA_CONVERTER",
    "ENCRYPTED",
    "EncryptedWithoutKeys",
    "QuietEncodedFailureConverter",
    "QuietFailureConverter",
    "SagaloomPayloadConverter",
    "converter",
]

ENCRYPTED = "binary/encrypted"
"""The ``encoding`` of a payload sagaloom's codec encrypted."""


class EncryptedWithoutKeys(ValueError):
    """An encrypted payload reached a process that has no encryption keys."""


class _EncryptedPayloads(EncodingPayloadConverter):
    """Reads an encrypted payload that no codec decrypted: says which setting is missing.

    Without it, a worker or client with no keys fails on another party's encrypted payload with
    the SDK's "Unknown payload encoding binary/encrypted". It never writes a payload.
    """

    @property
    def encoding(self) -> str:
        """See base class."""
        return ENCRYPTED

    def to_payload(self, value: Any) -> temporalio.api.common.v1.Payload | None:
        """Never: this converter only reads."""
        return None

    def from_payload(
        self, payload: temporalio.api.common.v1.Payload, type_hint: type | None = None
    ) -> Any:
        """Refuse, naming the setting.

        Raises:
            EncryptedWithoutKeys: always.
        """
        key = payload.metadata.get("encryption-key-id", b"?").decode(errors="replace")
        raise EncryptedWithoutKeys(
            f"a payload encrypted with key {key!r} reached a process with no encryption keys: "
            "set SAGALOOM_ENCRYPTION_KEYS to the same keys on every client and worker "
            "(SagaloomPlugin(), sagaloom.client.connect() and the saga command all read it)"
        )


class SagaloomPayloadConverter(CompositePayloadConverter):
    """The pydantic payload converter's encodings, and a clear error for an encrypted payload."""

    def __init__(self) -> None:
        super().__init__(*PydanticPayloadConverter().converters.values(), _EncryptedPayloads())


class QuietFailureConverter(DefaultFailureConverter):
    """Leave the stack trace out of ``ApplicationError`` failures.

    An ``ApplicationError`` is a failure the code raised on purpose (a participant's 402, a
    compensated saga): its message says everything, and a traceback in the Web UI only hides it.
    Any other exception is a bug and keeps its stack trace.
    """

    def to_failure(
        self,
        exception: BaseException,
        payload_converter: PayloadConverter,
        failure: temporalio.api.failure.v1.Failure,
    ) -> None:
        """Encode as the default converter does, then drop an application error's stack."""
        super().to_failure(exception, payload_converter, failure)
        if isinstance(exception, ApplicationError):
            failure.stack_trace = ""


DATA_CONVERTER: DataConverter = dataclasses.replace(
    pydantic_data_converter,
    payload_converter_class=SagaloomPayloadConverter,
    failure_converter_class=QuietFailureConverter,
)
"""Pydantic data converter with :class:`QuietFailureConverter`; use it on clients and workers."""


class QuietEncodedFailureConverter(QuietFailureConverter):
    """A :class:`QuietFailureConverter` whose failure messages go into an encoded payload.

    A payload codec (encryption) then covers them too (``SAGALOOM_ENCODE_FAILURES=true``).
    """

    def __init__(self) -> None:
        super().__init__(encode_common_attributes=True)


def converter(
    codec: PayloadCodec | None = None,
    *,
    encode_failures: bool = False,
    storage: ExternalStorage | None = None,
) -> DataConverter:
    """:data:`DATA_CONVERTER`, with a codec, encoded failures and external storage when asked.

    External storage keeps payloads over its threshold in a store; the codec encrypts a payload
    before it is stored, so what the store holds is encrypted too.
    """
    if codec is None and not encode_failures and storage is None:
        return DATA_CONVERTER
    return dataclasses.replace(
        DATA_CONVERTER,
        payload_codec=codec,
        failure_converter_class=(
            QuietEncodedFailureConverter if encode_failures else QuietFailureConverter
        ),
        external_storage=storage,
    )
