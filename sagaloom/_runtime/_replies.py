"""Asynchronous participants: the replies a saga waits for, correlated by idempotency key."""

from __future__ import annotations

import builtins
from datetime import timedelta
from typing import Any

from temporalio import workflow

from sagaloom._model import Reply

__all__ = ["Replies", "ReplyFailed"]


class ReplyFailed(Exception):
    """No reply came in time, or the participant said no; the message says which."""


class Replies:
    """The correlation ids awaiting a reply, and the replies taken for them."""

    def __init__(self) -> None:
        self._awaiting: set[str] = set()
        self._received: dict[str, Reply] = {}

    def expect(self, correlation: str) -> None:
        """Wait for a reply to ``correlation`` (before the command: a reply may come first)."""
        self._awaiting.add(correlation)

    async def wait(self, correlation: str, within: timedelta, step: str) -> dict[str, Any]:
        """Wait for the reply to ``correlation``; return its data.

        Raises:
            ReplyFailed: no reply ``within`` that time, or a negative one.
        """
        try:
            await workflow.wait_condition(
                lambda: correlation in self._received,
                timeout=within,
                timeout_summary=f"reply to {step}",
            )
        except builtins.TimeoutError:  # (temporalio's TimeoutError is a different class)
            raise ReplyFailed(f"ReplyTimeout: no reply within {within}") from None
        finally:
            self._awaiting.discard(correlation)
        reply = self._received[correlation]
        if not reply.ok:
            raise ReplyFailed(f"ReplyNegative: {reply.reason or 'the participant said no'}")
        return reply.data

    def offer(self, reply: Reply) -> None:
        """Take a reply; one that nothing waits for (late, duplicate) is ignored."""
        if reply.correlation_id in self._awaiting and reply.correlation_id not in self._received:
            self._received[reply.correlation_id] = reply
        else:
            workflow.logger.info(
                "saga %s: ignored a late or duplicate reply for %s",
                workflow.info().workflow_id,
                reply.correlation_id,
            )
