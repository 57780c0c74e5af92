"""Saga metrics, emitted through the worker's Temporal runtime (Prometheus when configured).

Names (each labelled ``saga``):

* ``sagaloom_saga_started`` — counter of sagas that began running;
* ``sagaloom_saga_ended`` — counter by ``status`` (COMPLETED, COMPENSATED, FAILED, CANCELED);
* ``sagaloom_saga_parked`` — counter of sagas parked in NEEDS_ATTENTION on a failed compensation;
* ``sagaloom_step_duration`` — histogram (ms) of forward actions by ``step`` and ``outcome``;
* ``sagaloom_step_attempts`` — histogram of attempts a forward action took, by ``step``;
* ``sagaloom_step_failures`` — counter of steps that failed for good, by ``step`` and ``error``
  (the error's type: ``Rejected``, ``Timeout``, ``MalformedOutput``, ...);
* ``sagaloom_compensations`` — counter of compensations by ``step`` and ``outcome`` (ok, failed);
* ``sagaloom_step_waits`` — counter of steps that waited for a service, by ``step`` and
  ``service`` (its breaker was open).

The SDK does not emit workflow metrics while replaying, so a count is not doubled by a replay.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

__all__ = ["SagaMetrics"]

TERMINAL = frozenset({"COMPLETED", "COMPENSATED", "FAILED", "CANCELED"})


class SagaMetrics:
    """The metric instruments of one saga run; create inside the workflow."""

    def __init__(self, saga: str) -> None:
        """Bind the instruments to the run's metric meter with a ``saga`` label."""
        meter = workflow.metric_meter().with_additional_attributes({"saga": saga})
        self._started = meter.create_counter("sagaloom_saga_started", "Sagas started")
        self._ended = meter.create_counter("sagaloom_saga_ended", "Sagas ended, by status")
        self._parked = meter.create_counter(
            "sagaloom_saga_parked", "Sagas parked on a failed compensation"
        )
        self._duration = meter.create_histogram_timedelta(
            "sagaloom_step_duration", "Duration of forward actions", "ms"
        )
        self._attempts = meter.create_histogram("sagaloom_step_attempts", "Attempts per step")
        self._failures = meter.create_counter(
            "sagaloom_step_failures", "Steps that failed for good, by step and error type"
        )
        self._compensations = meter.create_counter(
            "sagaloom_compensations", "Compensations run, by outcome"
        )
        self._waits = meter.create_counter(
            "sagaloom_step_waits", "Steps that waited for a service whose breaker was open"
        )
        self._key_waits = meter.create_counter(
            "sagaloom_key_waits", "Sagas that waited for an exclusive key, by key family"
        )
        self._key_wait = meter.create_histogram_timedelta(
            "sagaloom_key_wait_duration", "Time waited for an exclusive key, by key family", "ms"
        )

    def started(self) -> None:
        """Count a saga that began running."""
        self._started.add(1)

    def ended(self, status: str) -> None:
        """Count a saga that reached a terminal ``status`` (other statuses are ignored)."""
        if status in TERMINAL:
            self._ended.add(1, {"status": status})

    def parked(self) -> None:
        """Count a saga parked for an operator."""
        self._parked.add(1)

    def step(self, step: str, outcome: str, duration: timedelta, attempts: int) -> None:
        """Record a forward action's duration and attempts (0 attempts: unknown)."""
        self._duration.record(duration, {"step": step, "outcome": outcome})
        if attempts:
            self._attempts.record(attempts, {"step": step})

    def step_failed(self, step: str, error: str) -> None:
        """Count a step that failed for good with an error of type ``error``."""
        self._failures.add(1, {"step": step, "error": error})

    def waited(self, step: str, service: str) -> None:
        """Count a step that waits for its service."""
        self._waits.add(1, {"step": step, "service": service})

    def key_waited(self, family: str, waited: timedelta | None = None) -> None:
        """Count a saga that waits for a key of ``family``; with ``waited``: it got it."""
        if waited is None:
            self._key_waits.add(1, {"family": family})
        else:
            self._key_wait.record(waited, {"family": family})

    def compensation(self, step: str, ok: bool) -> None:
        """Count a compensation."""
        self._compensations.add(1, {"step": step, "outcome": "ok" if ok else "failed"})
