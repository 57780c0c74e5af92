"""How sagaloom writes failures into workflow history: expected failures without tracebacks."""

from __future__ import annotations

import dataclasses

import temporalio.api.failure.v1
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import (
    DataConverter,
    DefaultFailureConverter,
    PayloadCodec,
    PayloadConverter,
)
from temporalio.exceptions import ApplicationError

__all__ = ["DATA_CONVERTER", "QuietEncodedFailureConverter", "QuietFailureConverter", "converter"]


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
    pydantic_data_converter, failure_converter_class=QuietFailureConverter
)
"""Pydantic data converter with :class:`QuietFailureConverter`; use it on clients and workers."""


class QuietEncodedFailureConverter(QuietFailureConverter):
    """A :class:`QuietFailureConverter` whose failure messages go into an encoded payload.

    A payload codec (encryption) then covers them too (``SAGALOOM_ENCODE_FAILURES=true``).
    """

    def __init__(self) -> None:
        super().__init__(encode_common_attributes=True)


def converter(codec: PayloadCodec | None = None, *, encode_failures: bool = False) -> DataConverter:
    """:data:`DATA_CONVERTER`, with a payload codec and encoded failure messages when asked."""
    if codec is None and not encode_failures:
        return DATA_CONVERTER
    return dataclasses.replace(
        DATA_CONVERTER,
        payload_codec=codec,
        failure_converter_class=(
            QuietEncodedFailureConverter if encode_failures else QuietFailureConverter
        ),
    )
