"""Quiet, readable logs: an expected step failure is one line; tracebacks are kept for bugs."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from temporalio import activity, workflow
from temporalio.exceptions import ApplicationError

__all__ = ["JsonFormatter", "StepFailureFilter", "configure_logging"]


class StepFailureFilter(logging.Filter):
    """Turn the SDK's "Completing activity as failed" traceback into one line.

    Applies when the activity raised an ``ApplicationError`` (an expected, classified failure such
    as a participant's 503 or 402). Any other exception keeps its traceback: that is a bug.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite the record in place; never drops it."""
        err = record.exc_info[1] if record.exc_info else None
        if isinstance(err, ApplicationError) and "activity as failed" in record.getMessage():
            info = getattr(record, "temporal_activity", None) or {}
            record.msg = "saga %s step %s attempt %s failed: %s"
            record.args = (
                info.get("workflow_id", "?"),
                info.get("activity_id", "?"),
                info.get("attempt", "?"),
                f"{err.type}: {err.message}" if err.type else err.message,
            )
            record.exc_info = None
            record.exc_text = None
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per record, with the saga's workflow id and step when known."""

    def format(self, record: logging.LogRecord) -> str:
        """Render ``record`` as a JSON line."""
        entry: dict[str, Any] = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        context = getattr(record, "temporal_activity", None) or getattr(
            record, "temporal_workflow", None
        )
        if isinstance(context, dict):
            entry.update(
                {k: context[k] for k in ("workflow_id", "activity_id", "attempt") if k in context}
            )
        if record.exc_info:
            entry["traceback"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(
    level: int | str = logging.INFO, file: Path | None = None, *, json_lines: bool = False
) -> None:
    """Log one-line records to stderr (or ``file``) and install :class:`StepFailureFilter`.

    Args:
        level: Log level.
        file: Log to this file instead of stderr.
        json_lines: One JSON object per line (for log shippers) instead of text.
    """
    if file is not None:
        file.parent.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        filename=file,
        force=True,
    )
    if json_lines:
        for handler in logging.getLogger().handlers:
            handler.setFormatter(JsonFormatter())
    logging.getLogger("httpx").setLevel(logging.WARNING)
    # The saga id and step are in our messages already; drop the SDK's appended info dicts.
    workflow.logger.workflow_info_on_message = False
    activity.logger.activity_info_on_message = False
    logging.getLogger("temporalio.activity").addFilter(StepFailureFilter())
