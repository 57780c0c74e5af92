"""A saga worker: built with the plugin from a configuration; run as a process, stops gracefully."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from temporalio.client import Client
from temporalio.worker import Interceptor, Plugin, PollerBehaviorAutoscaling, Worker, WorkerTuner
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from sagaloom._client import connect
from sagaloom._codec import EncryptionCodec
from sagaloom._config import ConfigError, WorkerConfig
from sagaloom._devserver import ensure_search_attributes
from sagaloom._health import HealthServer
from sagaloom._model import Reply
from sagaloom._plugin import SagaloomPlugin
from sagaloom._registry import load_sagas, saga_activities
from sagaloom._runtime import SagaWorkflow
from sagaloom._telemetry import metrics_runtime, tracing_plugin

__all__ = ["build_worker", "run_worker"]

log = logging.getLogger("sagaloom.worker")


def build_worker(
    client: Client,
    sagas: Iterable[type[SagaWorkflow]] = (),
    *,
    config: WorkerConfig | None = None,
    task_queue: str | None = None,
    services: Mapping[str, str] | None = None,
    workflows: Sequence[type] = (),
    activities: Sequence[Callable[..., Any]] = (),
    interceptors: Sequence[Interceptor] = (),
    plugins: Sequence[Plugin] = (),
    passthrough: Sequence[str] = (),
) -> Worker:
    """Create (not start) a worker for ``sagas``, with the :class:`SagaloomPlugin`.

    A thin convenience over ``Worker(client, ..., plugins=[SagaloomPlugin(...)])`` that also
    applies a :class:`WorkerConfig`'s slots, tuner, pollers, rate limits, cache size and
    graceful shutdown. Use it as ``async with build_worker(client, [OrderSaga]): ...``.

    Args:
        client: Connected client. If it already has a :class:`SagaloomPlugin`, the worker uses
            that one (then pass participant URLs to it, not ``services`` here).
        sagas: Saga workflow classes.
        config: Worker settings; by default :class:`WorkerConfig` read from the environment.
        task_queue: Overrides ``config.task_queue``.
        services: Participant base URLs by name; by default ``config.services``.
        workflows: More workflow classes (for example hand-written ones).
        activities: More activities (your own steps' activities).
        interceptors: Worker interceptors (for example ``sagaloom.testing.FaultInjector``).
        plugins: More worker plugins.
        passthrough: More modules for the workflow sandbox to pass through (deterministic and
            side-effect free at import); ``sagaloom`` always is.

    Raises:
        ConfigError: ``services`` given while the client's own plugin has its URLs.
    """
    config = config or WorkerConfig.from_env()
    has_plugin = any(isinstance(p, SagaloomPlugin) for p in client.config().get("plugins", []))
    if has_plugin and services is not None:
        raise ConfigError(
            "the client already has a SagaloomPlugin: give the participant URLs to it, "
            "not to build_worker(services=...)"
        )
    own = (
        []
        if has_plugin
        else [
            SagaloomPlugin(
                services=config.services if services is None else services,
                tokens=config.service_tokens,
            )
        ]
    )
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
        task_queue=task_queue or config.task_queue,
        workflows=[*sagas, *workflows],
        activities=list(activities),
        max_cached_workflows=config.max_cached_workflows,
        max_activities_per_second=config.max_activities_per_second,
        max_task_queue_activities_per_second=config.max_task_queue_activities_per_second,
        graceful_shutdown_timeout=config.graceful_shutdown,
        interceptors=interceptors,
        plugins=[*own, *plugins],
        workflow_runner=SandboxedWorkflowRunner(
            restrictions=SandboxRestrictions.default.with_passthrough_modules(*passthrough)
        ),
        **slots,
    )


async def run_worker(config: WorkerConfig, stop: asyncio.Event | None = None) -> None:
    """Run a worker until ``stop`` is set (without one: until SIGTERM or SIGINT).

    On a stop signal the worker stops polling, lets in-flight activities finish within
    ``config.graceful_shutdown``; the plugin then closes the HTTP participant's pooled client.
    """
    if stop is None:  # a process of its own: stop on SIGTERM/SIGINT
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
    runtime = metrics_runtime(config.metrics_address) if config.metrics_address else None
    plugins = [tracing_plugin()] if config.tracing else []
    keys = config.encryption_keys
    client = await connect(
        config.address,
        config.namespace,
        runtime=runtime,
        plugins=plugins,
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
    worker = build_worker(
        client, sagas.values(), config=config, activities=saga_activities(sagas.values())
    )
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
        if health is not None:
            await health.stop()
    log.info("worker stopped")
