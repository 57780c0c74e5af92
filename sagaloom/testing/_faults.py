"""A fault-injection kit for testing sagas: make chosen steps fail, hang, or lose their reply.

Add a :class:`FaultInjector` to a test worker's interceptors and describe the faults::

    injector = FaultInjector([
        Fault("charge-payment", "lost_reply", attempts={1}),  # commits, caller sees an error
        Fault("create-shipment", "refuse"),                    # a non-retryable failure
        Fault("reserve-stock:compensate", "fail", attempts={1, 2}),
    ])
    Worker(client, ..., interceptors=[injector])
    # or: build_worker(client, sagas, interceptors=[injector])

Faults match an activity by its id — a step's name, or ``<step>:compensate`` for its
compensation — and optionally by workflow id and attempt. ``injector.injected`` counts what was
injected, for assertions.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal

from temporalio import activity
from temporalio.exceptions import ApplicationError
from temporalio.worker import (
    ActivityInboundInterceptor,
    ExecuteActivityInput,
    Interceptor,
)

__all__ = ["INJECTED_FAULT", "Fault", "FaultInjector", "FaultKind"]

INJECTED_FAULT = "InjectedFault"
"""``ApplicationError.type`` of injected failures."""

FaultKind = Literal["fail", "refuse", "delay", "lost_reply"]
"""``fail``: a retryable error before the call; ``refuse``: a non-retryable one; ``delay``: wait
``delay`` first (past the timeout, it times out); ``lost_reply``: make the call, then raise a
retryable error as if the reply was lost (the retry must be idempotent)."""


@dataclass(frozen=True)
class Fault:
    """One fault to inject."""

    step: str
    """Activity id to hit: a step name, or ``<step>:compensate``."""
    kind: FaultKind
    """What happens."""
    attempts: Collection[int] | None = None
    """Attempts to hit (1-based); None hits every attempt."""
    workflow_id: str | None = None
    """Only this saga run; None hits every run."""
    delay: timedelta = timedelta(seconds=5)
    """How long ``delay`` waits."""

    def hits(self, info: activity.Info) -> bool:
        """Whether this fault applies to the running activity."""
        return (
            info.activity_id == self.step
            and (self.workflow_id is None or info.workflow_id == self.workflow_id)
            and (self.attempts is None or info.attempt in self.attempts)
        )


class FaultInjector(Interceptor):
    """Worker interceptor that injects :class:`Fault` s into matching activities."""

    def __init__(self, faults: Sequence[Fault]) -> None:
        """Inject ``faults`` (the first that matches an activity attempt wins)."""
        self.faults = list(faults)
        self.injected: Counter[tuple[str, str]] = Counter()
        """``(step, kind)`` to how many times it was injected."""

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        """Wrap every activity."""
        return _Inbound(next, self)


class _Inbound(ActivityInboundInterceptor):
    def __init__(self, next: ActivityInboundInterceptor, injector: FaultInjector) -> None:
        super().__init__(next)
        self._injector = injector

    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        info = activity.info()
        fault = next((f for f in self._injector.faults if f.hits(info)), None)
        if fault is None:
            return await super().execute_activity(input)
        self._injector.injected[(fault.step, fault.kind)] += 1
        where = f"{fault.step} attempt {info.attempt}"
        if fault.kind == "fail":
            raise ApplicationError(f"injected failure at {where}", type=INJECTED_FAULT)
        if fault.kind == "refuse":
            raise ApplicationError(
                f"injected refusal at {where}", type=INJECTED_FAULT, non_retryable=True
            )
        if fault.kind == "delay":
            await asyncio.sleep(fault.delay.total_seconds())
            return await super().execute_activity(input)
        await super().execute_activity(input)
        raise ApplicationError(
            f"injected lost reply at {where} (it did commit)", type=INJECTED_FAULT
        )
