"""Per-service limits, saga side: a limited service's HTTP calls go to its own task queue.

Workers poll ``<task queue>@<service>`` for each service with a limit (see
:class:`~sagaloom._saga._outage.ServiceLimit`); this worker interceptor sends the HTTP activity of a
step that calls such a service there. The routing is not part of the saga's logic (a history
replays whatever queue its activities went to), so limits can be set or lifted while sagas run;
every worker of an app must have the same limits, as it has the same service URLs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection
from typing import Any

from temporalio import workflow
from temporalio.worker import (
    Interceptor,
    StartActivityInput,
    WorkflowInboundInterceptor,
    WorkflowInterceptorClassInput,
    WorkflowOutboundInterceptor,
)

from sagaloom._saga._model import HttpRequest
from sagaloom._saga._outage import limit_queue
from sagaloom._wire._names import HTTP_ACTIVITY

__all__ = ["ServiceRouting"]


class ServiceRouting(Interceptor):
    """Sends HTTP calls to limited services to those services' task queues."""

    def __init__(self, services: Collection[str]) -> None:
        """Route the calls to ``services`` (the ones with a limit)."""
        self.services = frozenset(services)

    def workflow_interceptor_class(
        self, input: WorkflowInterceptorClassInput
    ) -> type[WorkflowInboundInterceptor] | None:
        """The inbound interceptor that wraps each saga's outbound calls."""
        services = self.services

        class _Inbound(WorkflowInboundInterceptor):
            def init(self, outbound: WorkflowOutboundInterceptor) -> None:
                super().init(_Outbound(outbound, services))

        return _Inbound


class _Outbound(WorkflowOutboundInterceptor):
    def __init__(self, next: WorkflowOutboundInterceptor, services: frozenset[str]) -> None:
        super().__init__(next)
        self._services = services

    def start_activity(self, input: StartActivityInput) -> workflow.ActivityHandle[Any]:
        request = input.args[0] if input.args else None
        if (
            input.activity == HTTP_ACTIVITY
            and input.task_queue is None
            and isinstance(request, HttpRequest)
            and request.service in self._services
        ):
            queue = limit_queue(workflow.info().task_queue, request.service)
            input = dataclasses.replace(input, task_queue=queue)
        return super().start_activity(input)
