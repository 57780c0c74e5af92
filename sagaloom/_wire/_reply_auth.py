"""Reply tokens: proof that an asynchronous reply comes from the participant that got the command.

Every command the HTTP participant sends carries its correlation id (the step's idempotency key)
and a token, an HMAC-SHA256 of that id under a secret the workers share
(``SAGALOOM_REPLY_SECRET``). A reply must bring the token back; the workers' endpoint checks it
before anything reaches Temporal. The secret never enters workflow history.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

from pydantic import SecretStr

__all__ = ["CORRELATION_HEADER", "TOKEN_HEADER", "ReplySigner"]

CORRELATION_HEADER = "Sagaloom-Correlation-Id"
"""Command header: the id a reply names (``<workflow id>:<step>``)."""
TOKEN_HEADER = "Sagaloom-Reply-Token"
"""Command header: the token a reply must carry."""


class ReplySigner:
    """Makes and checks reply tokens under one secret."""

    def __init__(self, secret: SecretStr | None = None) -> None:
        """Use ``secret``; without one, a random secret (replies then reach this process only)."""
        self.generated = secret is None
        """Whether the secret was made up here (no shared ``SAGALOOM_REPLY_SECRET``)."""
        raw = secret.get_secret_value() if secret is not None else secrets.token_urlsafe(32)
        self._key = raw.encode()

    def token(self, correlation_id: str) -> str:
        """The token for replies to ``correlation_id``."""
        digest = hmac.new(self._key, correlation_id.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def verify(self, correlation_id: str, token: str) -> bool:
        """Whether ``token`` is the token of ``correlation_id`` (constant time).

        Any text is an answer, never an error: a token or id with non-ASCII characters (or lone
        surrogates, which JSON allows) is simply not a valid one.
        """
        try:
            expected = self.token(correlation_id).encode()
            given = token.encode("utf-8")
        except UnicodeError:
            return False
        return hmac.compare_digest(expected, given)
