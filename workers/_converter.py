"""How sagaloom writes failures into workflow history: expected failures without tracebacks."""

from __future__ import annotations

import dataclasses

import temporalio.api.failure.v1
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter, DefaultFailureConverter, PayloadConverter
from temporalio.exceptions import ApplicationError

__all__ = ["DATA_CONVERTER", "QuietFailureConverter"]


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
