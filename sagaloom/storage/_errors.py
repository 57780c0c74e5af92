"""What can go wrong with a stored payload, said plainly."""

from __future__ import annotations

__all__ = ["PayloadMissing", "PayloadStoreError", "PayloadStoreUnavailable"]


class PayloadStoreError(RuntimeError):
    """A payload could not be stored in, or read from, the payload store."""


class PayloadStoreUnavailable(PayloadStoreError):
    """The store did not answer in time; the step or workflow task is retried, nothing is lost."""


class PayloadMissing(PayloadStoreError):
    """A history refers to a payload the store no longer holds (or holds altered).

    The message names the saga (its workflow id) and the object, so an operator can restore it
    from a backup or close the run. Never retried as if the store were down.
    """
