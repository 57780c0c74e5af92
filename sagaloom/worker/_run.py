"""A saga worker: built with the plugin from a configuration; run as a process, stops gracefully."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any

from temporalio.client import Client
from temporalio.common import VersioningBehavior, WorkerDeploymentVersion
from temporalio.worker import (
    Interceptor,
    Plugin,
    PollerBehaviorAutoscaling,
    UnsandboxedWorkflowRunner,
    Worker,
    WorkerDeploymentConfig,
    WorkerTuner,
)
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from sagaloom._broker._consumers import BrokerConsumers, Trigger, parse_triggers
from sagaloom._encoding._codec import EncryptionCodec
from sagaloom._ops._telemetry import metrics_runtime, tracing_plugin
from sagaloom._runtime import SagaWorkflow
from sagaloom._saga._model import Reply
from sagaloom.client._intake import deliver
from sagaloom.client._runs import connect
from sagaloom.client._search_attributes import ensure_search_attributes
from sagaloom.storage._stores import PayloadStore
from sagaloom.storage._sweeper import PayloadSweeper
from sagaloom.worker._config import ConfigError, WorkerConfig
from sagaloom.worker._endpoint import WorkerEndpoint
from sagaloom.worker._parked import parked_gauges
from sagaloom.worker._plugin import SagaloomPlugin
from sagaloom.worker._registry import broker_users, load_sagas, saga_activities, saga_services

__all__ = ["build_worker", "check_broker", "check_services", "run_worker"]

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
        if has_plugin or any(isinstance(p, SagaloomPlugin) for p in plugins)
        else [SagaloomPlugin.from_config(config, services=services, broker=False)]
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
    if config.deployment and config.build_id:
        slots["deployment_config"] = WorkerDeploymentConfig(
            version=WorkerDeploymentVersion(config.deployment, config.build_id),
            use_worker_versioning=True,
            default_versioning_behavior=(
                VersioningBehavior.PINNED
                if config.versioning == "pinned"
                else VersioningBehavior.AUTO_UPGRADE
            ),
        )
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
        workflow_runner=(
            SandboxedWorkflowRunner(
                restrictions=SandboxRestrictions.default.with_passthrough_modules(*passthrough)
            )
            if config.sandboxed
            else UnsandboxedWorkflowRunner()
        ),
        **slots,
    )


async def run_worker(config: WorkerConfig, stop: asyncio.Event | None = None) -> None:
    """Run a worker until ``stop`` is set (without one: until SIGTERM or SIGINT).

    The endpoint (health, readiness, replies) comes up first; the worker then connects to
    Temporal, retrying with back-off while the server is unreachable (``/readyz`` says 503
    meanwhile). On a stop signal the worker stops polling and lets in-flight activities finish
    within ``config.graceful_shutdown``; the plugin then closes the HTTP participant's client.

    Raises:
        SagaDefinitionError: a saga module defines a broken saga.
        ConfigError: a registered saga calls a service with no URL configured.
    """
    if stop is None:  # a process of its own: stop on SIGTERM/SIGINT
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
    sagas = load_sagas(config.saga_modules)
    check_services(sagas.values(), config.services)
    check_broker(sagas.values(), config.nats_url)
    triggers = _triggers(config, sagas)
    plugin = SagaloomPlugin.from_config(config)
    signer = plugin.participant.replies
    client_box: list[Client] = []

    async def deliver_one(reply: Reply) -> None:
        await deliver(client_box[0], reply)

    endpoint = None
    if config.health_address:
        endpoint = WorkerEndpoint(config.health_address, deliver_one, signer)
        await endpoint.start()
        if signer.generated:
            log.warning(
                "SAGALOOM_REPLY_SECRET is not set: replies are taken only by this process "
                "(set the same secret on every worker)"
            )
    try:
        client = await _connect_patiently(config, stop, plugin.payloads)
        if client is None:
            return
        client_box.append(client)
        await _register_attributes(client, config.namespace)
        worker = build_worker(
            client,
            sagas.values(),
            config=config,
            activities=saga_activities(sagas.values()),
            plugins=[plugin],
        )
        log.info(
            "worker polling %s on %s/%s: sagas %s; services %s",
            config.task_queue,
            config.address,
            config.namespace,
            ", ".join(sorted(sagas)) or "none",
            ", ".join(f"{k}={v}" for k, v in sorted(config.services.items())) or "none",
        )
        if config.metrics_address:
            log.info("metrics at http://%s/metrics", config.metrics_address)
        parked = parked_gauges(client) if config.metrics_address else contextlib.nullcontext()
        consuming = _consuming(plugin, client, deliver_one, triggers, config, stop)
        async with worker, consuming, parked, _sweeping(plugin, client, config):
            if endpoint is not None:
                endpoint.ready = True
            await stop.wait()
            if endpoint is not None:
                endpoint.ready = False
            log.info("stopping: finishing in-flight tasks (up to %s)", config.graceful_shutdown)
    finally:
        if endpoint is not None:
            await endpoint.stop()
    log.info("worker stopped")


async def _connect_patiently(
    config: WorkerConfig, stop: asyncio.Event, payloads: PayloadStore
) -> Client | None:
    """Connect to Temporal, retrying with back-off (1 s doubling to 30 s) until ``stop``."""
    runtime = metrics_runtime(config.metrics_address) if config.metrics_address else None
    plugins = [tracing_plugin()] if config.tracing else []
    keys = config.encryption_keys
    delay, attempt = 1.0, 1
    while not stop.is_set():
        try:
            return await connect(
                config.address,
                config.namespace,
                runtime=runtime,
                plugins=plugins,
                codec=EncryptionCodec.from_spec(keys.get_secret_value()) if keys else None,
                encode_failures=config.encode_failures,
                payloads=payloads,
            )
        except RuntimeError as err:  # the SDK's connection failure
            reason = str(err).splitlines()[0][:200]
            log.warning(
                "Temporal at %s not reachable (attempt %d): %s; retrying in %.0fs",
                config.address,
                attempt,
                reason,
                delay,
            )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), delay)
        delay, attempt = min(delay * 2, 30.0), attempt + 1
    return None


@contextlib.asynccontextmanager
async def _sweeping(
    plugin: SagaloomPlugin, client: Client, config: WorkerConfig
) -> AsyncIterator[None]:
    """Sweep the stored payloads of sagas gone past retention, meanwhile.

    (Broker bodies need no sweep: their bucket's TTL is the streams' age.)
    """
    if not plugin.payloads.on:
        yield
        return
    done = asyncio.Event()
    sweeper = PayloadSweeper([plugin.payloads.sweepable()], client)
    task = asyncio.create_task(sweeper.run(config.payload_sweep, done))
    try:
        yield
    finally:
        done.set()
        await task


async def _register_attributes(client: Client, namespace: str) -> None:
    try:
        added = await ensure_search_attributes(client, namespace)
        if added:
            log.info("registered search attributes %s on %s", added, namespace)
    except Exception as err:  # a cluster may not let workers register them
        log.warning("could not check search attributes (register them from deploy/): %s", err)


def check_broker(sagas: Iterable[type[SagaWorkflow]], nats_url: str | None) -> None:
    """Refuse to run sagas that send broker commands or publish events without a broker.

    Raises:
        ConfigError: naming the sagas and the variable to set.
    """
    users = broker_users(sagas)
    if users and not nats_url:
        raise ConfigError(
            f"sagas {', '.join(users)} use the broker (Command steps or events=True): "
            "set SAGALOOM_NATS_URL (saga dev and ./run demo start one)"
        )


def _triggers(config: WorkerConfig, sagas: Mapping[str, type[SagaWorkflow]]) -> list[Trigger]:
    try:
        return parse_triggers(list(config.triggers), {n: c.saga for n, c in sagas.items()})
    except ValueError as err:
        raise ConfigError(str(err)) from None


@contextlib.asynccontextmanager
async def _consuming(
    plugin: SagaloomPlugin,
    client: Client,
    deliver: Callable[[Reply], Awaitable[None]],
    triggers: list[Trigger],
    config: WorkerConfig,
    stop: asyncio.Event,
) -> AsyncIterator[None]:
    """Run the broker consumers (replies, triggers) beside the worker, when there is a broker."""
    if plugin.broker is None:
        yield
        return
    consumers = BrokerConsumers(
        plugin.broker, client, deliver, triggers=triggers, task_queue=config.task_queue
    )
    done = asyncio.Event()
    task = asyncio.create_task(consumers.run(done))
    log.info(
        "broker consumers on %s (namespace %s): replies%s",
        config.nats_url,
        config.nats_namespace,
        "".join(f", {t.subject} -> {t.saga.name}" for t in triggers),
    )
    try:
        yield
    finally:
        done.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 10)


def check_services(sagas: Iterable[type[SagaWorkflow]], services: Mapping[str, str]) -> None:
    """Refuse to run sagas that call a participant service with no URL configured.

    Without the URL every such saga would compensate at its first call: a configuration
    mistake turned into business compensations.

    Raises:
        ConfigError: naming the saga, the step and the variable to set.
    """
    missing = [
        f"saga {saga}, step {step}: service {service!r} (set SAGALOOM_SERVICE_{service.upper()})"
        for saga, step, service in dict.fromkeys(saga_services(sagas))
        if service not in services
    ]
    if missing:
        raise ConfigError("no URL for participant services: " + "; ".join(missing))
