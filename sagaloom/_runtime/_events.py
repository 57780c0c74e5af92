"""Lifecycle events: a saga's life as CloudEvents, published from a local activity.

Only sagas defined with ``events=True`` record any, and only runs started since (the
``sagaloom-events`` patch): off, it costs nothing. Events queue in the workflow and one
publisher task sends them in batches; each has a deterministic id, which is also its
``Nats-Msg-Id``, so a retried or replayed publish is stored once.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy

from sagaloom._saga._definition import Saga
from sagaloom._saga._model import SagaEvent
from sagaloom._wire._names import EVENTS_ACTIVITY

__all__ = ["EventLog"]

_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=30))


class EventLog:
    """The events a saga run has to publish, and the task that publishes them."""

    def __init__(self, saga: Saga[Any]) -> None:
        self._saga = saga
        self._pending: list[SagaEvent] = []
        self._count = 0
        self._closing = False

    @property
    def enabled(self) -> bool:
        """Whether this run publishes events (its saga's ``events=True``)."""
        return self._saga.events

    def emit(self, kind: str, key: str | None, **data: Any) -> None:
        """Queue event ``io.sagaloom.<kind>`` with ``data`` (None values left out)."""
        if not self.enabled:
            return
        info = workflow.info()
        self._count += 1
        self._pending.append(
            SagaEvent(
                id=f"{info.workflow_id}/{info.run_id}/{self._count}",
                type=f"io.sagaloom.{kind}",
                source=f"sagaloom/{self._saga.name}",
                subject=info.workflow_id,
                time=workflow.now().isoformat(),
                data={
                    "saga": self._saga.name,
                    "key": key,
                    **{k: v for k, v in data.items() if v is not None},
                },
            )
        )

    async def publish(self) -> None:
        """Publish queued events until :meth:`close` is called and nothing is left."""
        while True:
            await workflow.wait_condition(lambda: bool(self._pending) or self._closing)
            if not self._pending:
                return
            batch, self._pending = self._pending, []
            await workflow.execute_local_activity(
                EVENTS_ACTIVITY,
                batch,
                start_to_close_timeout=timedelta(seconds=10),
                retry_policy=_RETRY,
                summary=f"publish {len(batch)} lifecycle event(s)",
            )

    def close(self) -> None:
        """No more events will come: the publisher ends once the queue is empty."""
        self._closing = True
