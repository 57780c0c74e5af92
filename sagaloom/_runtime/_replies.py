"""Asynchronous participants: the replies a saga waits for, correlated by idempotency key.

Replies arrive through the ``participant_reply`` update. Its validator (:meth:`Replies.check`)
refuses a reply nothing waits for — unexpected, late, duplicate — and one too large or too deep
(``MAX_REPLY_BYTES``; the HTTP endpoint answers those 413 before they get here), so such a reply
is never written to history, whoever sends it.
"""

from __future__ import annotations

import builtins
from datetime import timedelta
from typing import Any

from temporalio import workflow

from sagaloom._runtime._payloads import payloads_stored
from sagaloom._saga._model import MAX_REPLY_BYTES, MAX_STORED_REPLY_BYTES, Reply, reply_problem

__all__ = ["Replies", "ReplyFailed"]


class ReplyFailed(Exception):
    """No reply came in time, or the participant said no; the message says which."""

    def __init__(self, message: str, *, timed_out: bool) -> None:
        super().__init__(message)
        self.timed_out = timed_out
        """No reply came in time (else: a negative reply)."""


class Replies:
    """The correlation ids awaiting a reply, and the replies taken for them."""

    def __init__(self) -> None:
        self._awaiting: set[str] = set()
        self._received: dict[str, Reply] = {}

    def expect(self, correlation: str) -> None:
        """Wait for a reply to ``correlation`` (before the command: a reply may come first).

        A command sent again (an operator's retry) waits for a new reply: the earlier one is
        forgotten.
        """
        self._received.pop(correlation, None)
        self._awaiting.add(correlation)

    def check(self, reply: Reply) -> None:
        """Refuse a reply the saga does not wait for, or too large (the update's validator).

        Raises:
            ValueError: saying why; the reply never reaches history.
        """
        correlation = reply.correlation_id
        if correlation in self._received:
            raise ValueError(f"duplicate reply for {correlation}: the first one was taken")
        if correlation not in self._awaiting:
            raise ValueError(f"no step waits for a reply to {correlation} (late or unexpected)")
        limit = MAX_STORED_REPLY_BYTES if payloads_stored() else MAX_REPLY_BYTES
        problem = reply_problem(reply, limit)
        if problem is not None:
            raise ValueError(problem)

    def take(self, reply: Reply) -> None:
        """Take a checked reply."""
        self._received[reply.correlation_id] = reply

    async def wait(
        self, correlation: str, within: timedelta, step: str, *, last: bool = True
    ) -> dict[str, Any]:
        """Wait for the reply to ``correlation``; return its data.

        Args:
            correlation: The command's correlation id.
            within: How long to wait.
            step: The step's name (the timer's summary).
            last: False when the command may be sent again after a timeout: the saga then
                still takes a reply to it (call :meth:`forget` when giving up).

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
            if last:
                self._awaiting.discard(correlation)
            raise ReplyFailed(f"ReplyTimeout: no reply within {within}", timed_out=True) from None
        except BaseException:
            self._awaiting.discard(correlation)
            raise
        self._awaiting.discard(correlation)
        return _data(self._received[correlation])

    def answered(self, correlation: str, reply: Reply) -> dict[str, Any]:
        """Take the reply a command's ask activity ended with; return its data.

        It counts as taken: the same reply coming again through the update is refused as a
        duplicate.

        Raises:
            ReplyFailed: a negative reply.
        """
        self._received[correlation] = reply
        self._awaiting.discard(correlation)
        return _data(reply)

    def arrived(self, correlation: str) -> bool:
        """Whether a reply to ``correlation`` has been taken (and not yet consumed)."""
        return correlation in self._received

    def forget(self, correlation: str) -> None:
        """Stop waiting for a reply to ``correlation`` (a later one is refused as late)."""
        self._awaiting.discard(correlation)


def _data(reply: Reply) -> dict[str, Any]:
    """A positive reply's data.

    Raises:
        ReplyFailed: a negative reply.
    """
    if not reply.ok:
        reason = reply.reason or "the participant said no"
        raise ReplyFailed(f"ReplyNegative: {reason}", timed_out=False)
    return reply.data
