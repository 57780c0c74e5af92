"""A saga worker process: registers the sagas and the HTTP participant, stops gracefully."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from temporalio.client import Client
from temporalio.worker import Interceptor, PollerBehaviorAutoscaling, Worker, WorkerTuner
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from activities import HttpParticipant
from workers._client import connect
from workers._codec import EncryptionCodec
from workers._config import WorkerConfig
from workers._devserver import ensure_search_attributes
from workers._health import HealthServer
from workers._registry import load_sagas
from workers._telemetry import metrics_runtime, tracing_interceptor
from workflows import Reply, SagaWorkflow

__all__ = ["build_worker", "run_worker"]

log = logging.getLogger("sagaloom.worker")


def build_worker(
    client: Client,
    config: WorkerConfig,
    sagas: Iterable[type[SagaWorkflow]],
    participant: HttpParticipant,
    *,
    workflows: Sequence[type] = (),
    activities: Sequence[Callable[..., Any]] = (),
    passthrough: Sequence[str] = (),
    interceptors: Sequence[Interceptor] = (),
) -> Worker:
    """Create (not start) a worker for ``sagas`` with the HTTP participant's activity.

    Args:
        client: Connected client.
        config: Slots, tuner, pollers, rate limits, cache size, graceful shutdown.
        sagas: Saga workflow classes.
        participant: The HTTP participant whose activity the worker runs.
        workflows: More workflow classes (for example hand-written ones).
        activities: More activities (your own steps' activities).
        passthrough: More modules to pass through the sandbox (deterministic, side-effect free).
        interceptors: Worker interceptors (for example ``activities.FaultInjector`` in tests).

    The ``workflows`` package is passed through the sandbox: it is side-effect free and
    deterministic, and re-importing it for every run would cost most of a workflow task.
    """
    slots: dict[str, Any] = {
        "max_concurrent_activities": config.max_concurrent_activities,
        "max_concurrent_local_activities": config.max_concurrent_activities,
        "max_concurrent_workflow_tasks": config.max_concurrent_workflow_tasks,
    }
    if config.tuner == "resource":
        slots = {
            "tuner": WorkerTuner.create_resource_based(
                target_memory_usage=0.8, target_cpu_usage=0.9
            )
        }
    if config.poller == "autoscaling":
        slots["workflow_task_poller_behavior"] = PollerBehaviorAutoscaling()
        slots["activity_task_poller_behavior"] = PollerBehaviorAutoscaling()
    return Worker(
        client,
        task_queue=config.task_queue,
        workflows=[*sagas, *workflows],
        activities=[participant.call, *activities],
        max_cached_workflows=config.max_cached_workflows,
        max_activities_per_second=config.max_activities_per_second,
        max_task_queue_activities_per_second=config.max_task_queue_activities_per_second,
        graceful_shutdown_timeout=config.graceful_shutdown,
        interceptors=interceptors,
        **slots,
        workflow_runner=SandboxedWorkflowRunner(
            restrictions=SandboxRestrictions.default.with_passthrough_modules(
                "workflows", *passthrough
            )
        ),
    )


async def run_worker(config: WorkerConfig, stop: asyncio.Event | None = None) -> None:
    """Run a worker until ``stop`` is set (without one: until SIGTERM or SIGINT).

    On a stop signal the worker stops polling, lets in-flight activities finish within
    ``config.graceful_shutdown``, then closes the HTTP participant's pooled client.
    """
    if stop is None:  # a process of its own: stop on SIGTERM/SIGINT
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
    runtime = metrics_runtime(config.metrics_address) if config.metrics_address else None
    interceptors = [tracing_interceptor()] if config.tracing else []
    keys = config.encryption_keys
    client = await connect(
        config.address,
        config.namespace,
        runtime=runtime,
        interceptors=interceptors,
        codec=EncryptionCodec.from_spec(keys.get_secret_value()) if keys else None,
        encode_failures=config.encode_failures,
    )
    try:
        added = await ensure_search_attributes(client, config.namespace)
        if added:
            log.info("registered search attributes %s on %s", added, config.namespace)
    except Exception as err:  # a cluster may not let workers register them
        log.warning("could not check search attributes (register them from deploy/): %s", err)
    sagas = load_sagas(config.saga_modules)
    participant = HttpParticipant(config.services, tokens=config.service_tokens)
    worker = build_worker(client, config, sagas.values(), participant)
    log.info(
        "worker polling %s on %s/%s: sagas %s; services %s",
        config.task_queue,
        config.address,
        config.namespace,
        ", ".join(sorted(sagas)),
        ", ".join(f"{k}={v}" for k, v in sorted(config.services.items())) or "none",
    )
    if config.metrics_address:
        log.info("metrics at http://%s/metrics", config.metrics_address)

    async def deliver(reply: Reply) -> None:
        workflow_id = reply.correlation_id.rsplit(":", 1)[0]
        await client.get_workflow_handle(workflow_id).signal("reply", reply)

    health = HealthServer(config.health_address, deliver) if config.health_address else None
    if health is not None:
        await health.start()
    try:
        async with worker:
            if health is not None:
                health.ready = True
            await stop.wait()
            if health is not None:
                health.ready = False
            log.info("stopping: finishing in-flight tasks (up to %s)", config.graceful_shutdown)
    finally:
        await participant.aclose()
        if health is not None:
            await health.stop()
    log.info("worker stopped")
