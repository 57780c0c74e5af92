"""How the runtime reads a failed action: one line of why, the attempt, refusal or unknown."""

from __future__ import annotations

from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    ChildWorkflowError,
    FailureError,
    RetryState,
    TimeoutError,
    is_cancelled_exception,
)

from sagaloom._saga._holding import FailureKind
from sagaloom._saga._outage import BREAKER_OPEN, OUTAGE_BUDGET_SPENT
from sagaloom._wire._names import PARTICIPANT_UNAVAILABLE, TOOK_EFFECT

__all__ = [
    "StepFailed",
    "attempt_of",
    "breaker_open",
    "cancelled",
    "describe",
    "error_type",
    "failure_kind",
    "refused",
]

_UNAVAILABLE = frozenset({PARTICIPANT_UNAVAILABLE, "BrokerUnavailable", OUTAGE_BUDGET_SPENT})
"""Failures whose retries were spent on a participant (or broker) that did not answer."""
_UNKNOWN = TOOK_EFFECT | {"MalformedOutput", "ItemsFailed", "ItemsBatchLost", "OutputTooLarge"}
"""Answers the engine cannot read as done or refused; fan-out items that failed."""


def describe(err: BaseException) -> str:
    """One line saying why an action failed, from the innermost meaningful cause."""
    cause: BaseException | None = err
    while isinstance(cause, ActivityError | ChildWorkflowError) and cause.cause is not None:
        cause = cause.cause  # a child saga's own failure says which of its steps failed and why
    budget_spent = isinstance(err, ActivityError) and err.retry_state == RetryState.TIMEOUT
    if budget_spent and cause is not None and not isinstance(cause, TimeoutError):
        # The server stopped retrying because the next attempt would have ended past the
        # budget: the failure is the last attempt's, but what ended the action is the budget.
        return f"timed out (schedule_to_close: its budget is spent); last error: {describe(cause)}"
    if isinstance(cause, TimeoutError):
        what = f"timed out ({cause.type.name.lower() if cause.type else 'timeout'})"
        last = cause.cause  # the last attempt's failure, when retries used the budget up
        return f"{what}; last error: {describe(last)}" if last is not None else what
    if isinstance(cause, ApplicationError):
        kind = f"{cause.type}: " if cause.type else ""
        return f"{kind}{cause.message}"
    return str(cause) or type(cause).__name__


def error_type(err: BaseException) -> str:
    """A failure's type, for metrics: the application error's type, ``Timeout``, or a class name.

    A bounded set (the types participants and activities raise), so it can label a metric.
    """
    cause: BaseException | None = err
    while isinstance(cause, ActivityError | ChildWorkflowError) and cause.cause is not None:
        cause = cause.cause
    if isinstance(err, ActivityError) and err.retry_state == RetryState.TIMEOUT:
        return "Timeout"
    if isinstance(cause, TimeoutError):
        return "Timeout"
    if isinstance(cause, ApplicationError) and cause.type:
        return cause.type[:64]
    return type(cause).__name__


def attempt_of(err: BaseException) -> int | None:
    """The attempt an activity failure reports in its details (the HTTP activity does)."""
    cause = err.cause if isinstance(err, ActivityError) else err
    if isinstance(cause, ApplicationError) and cause.details:
        first = cause.details[0]
        if isinstance(first, dict) and isinstance(first.get("attempt"), int):
            return int(first["attempt"])
    return None


def cancelled(err: BaseException, *, task_cancelled: bool) -> bool:
    """Whether an action ended because the saga was cancelled.

    Also when the cancellation reached an activity between two attempts: its failure is then the
    last attempt's error (a heartbeat timeout, say), with the retry state saying a cancel was
    requested. A local activity that timed out carries that same retry state, so it counts only
    when the task running the step was itself cancelled (``task_cancelled``).
    """
    if is_cancelled_exception(err):
        return True
    return (
        task_cancelled
        and isinstance(err, ActivityError | ChildWorkflowError)
        and err.retry_state == RetryState.CANCEL_REQUESTED
    )


def breaker_open(err: BaseException) -> str | None:
    """The breaker a call was not made for, when it was held (the saga waits for it).

    Returns:
        None when the call was not held; the service whose breaker holds it (its own, or an
        operator's hold before the step, ``hold.<saga>.<step>``), or ``""`` for the call's own
        service when the error does not name one.
    """
    cause = err.cause if isinstance(err, ActivityError) else err
    if not isinstance(cause, ApplicationError) or cause.type != BREAKER_OPEN:
        return None
    first = cause.details[0] if cause.details else None
    named = first.get("service") if isinstance(first, dict) else None
    return named if isinstance(named, str) else ""


def refused(err: FailureError, non_retryable_types: tuple[str, ...] | list[str]) -> bool:
    """Whether an action failed with a non-retryable error: the participant said no.

    Anything else (a timeout, retries used up, a cancellation) leaves the outcome unknown.

    Args:
        err: The action's failure.
        non_retryable_types: Error types the step lists as non-retryable.
    """
    if isinstance(err, ChildWorkflowError):
        return True  # the child saga already compensated itself
    cause = err.cause if isinstance(err, ActivityError) else err
    if isinstance(cause, ApplicationError) and cause.type in TOOK_EFFECT:
        return False  # it answered 2xx: it took effect, however unreadable the answer
    if isinstance(err, ActivityError):
        return err.retry_state == RetryState.NON_RETRYABLE_FAILURE
    if isinstance(err, ApplicationError):  # a local activity's failure arrives unwrapped
        return err.non_retryable or err.type in non_retryable_types
    return False


def failure_kind(
    err: BaseException, non_retryable_types: tuple[str, ...] | list[str]
) -> FailureKind:
    """How a step's action failed for good (for its ``on_failure`` policy).

    Args:
        err: The action's failure.
        non_retryable_types: Error types the step lists as non-retryable.
    """
    if isinstance(err, ChildWorkflowError):
        return "child"
    if is_cancelled_exception(err):
        return "cancelled"
    if isinstance(err, FailureError) and refused(err, non_retryable_types):
        return "refused"
    cause: BaseException | None = err
    while isinstance(cause, ActivityError | ChildWorkflowError) and cause.cause is not None:
        cause = cause.cause
    if isinstance(cause, ApplicationError) and cause.type == "DeadlineExceeded":
        return "deadline"
    if isinstance(cause, ApplicationError) and cause.type in _UNAVAILABLE:
        return "unavailable"
    timed_out = isinstance(err, ActivityError) and err.retry_state == RetryState.TIMEOUT
    if timed_out or isinstance(cause, TimeoutError):
        return "timeout"
    if isinstance(cause, ApplicationError) and cause.type in _UNKNOWN:
        return "unknown"
    return "bug"


class StepFailed(Exception):
    """A forward action failed for good; carries the original error."""

    def __init__(self, step: str, error: BaseException) -> None:
        super().__init__(f"step {step} failed: {describe(error)}")
        self.step = step
        self.error = error
