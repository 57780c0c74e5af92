"""The Temporal plugin that adds sagaloom to a client, a worker or a replayer."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from datetime import timedelta
from typing import Any

from pydantic import SecretStr
from temporalio import workflow
from temporalio.client import Client
from temporalio.client import Interceptor as ClientInterceptor
from temporalio.converter import DataConverter, PayloadCodec
from temporalio.plugin import SimplePlugin
from temporalio.worker import Interceptor as WorkerInterceptor
from temporalio.worker import Worker, WorkflowRunner
from temporalio.worker import WorkerConfig as TemporalWorkerConfig
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

from sagaloom._broker._bus import Broker, StreamLimits
from sagaloom._encoding._codec import EncryptionCodec, codec_from_env
from sagaloom._encoding._converter import converter
from sagaloom._runtime._breaker import ServiceBreaker
from sagaloom._runtime._items import ItemsWorkflow
from sagaloom._runtime._keylocks import KeyShard
from sagaloom._runtime._links import LINKS
from sagaloom._runtime._notice import EndNotice
from sagaloom._runtime._routing import ServiceRouting
from sagaloom._saga._model import MAX_STORED_REPLY_BYTES
from sagaloom._saga._outage import BreakerSettings, ServiceLimit, limit_queue
from sagaloom._wire._names import KEY_QUEUE
from sagaloom._wire._protocol import DEFAULT_NAMESPACE, BrokerNames
from sagaloom._wire._reply_auth import ReplySigner
from sagaloom.participants._breakers import Breakers
from sagaloom.participants._http_activity import HttpParticipant
from sagaloom.storage._stores import PayloadStore
from sagaloom.worker._config import WorkerConfig
from sagaloom.worker._keys import (
    ask_key,
    closed_holders,
    release_keys,
)
from sagaloom.worker._purity import passable_modules

__all__ = ["SagaloomPlugin"]

_SERVING_KEYS: set[int] = set()
"""Connections whose key shards' worker runs in this process: the SDK refuses two workers of
one task queue on one connection, so the second of two workers on one client (two task
queues, say) leaves the shards to the first."""

PASSTHROUGH = ("sagaloom",)
"""Modules the workflow sandbox takes from outside: sagaloom is deterministic and side-effect
free at import, and re-importing it for every run would cost most of a workflow task."""


class SagaloomPlugin(SimplePlugin):
    """sagaloom on a Temporal client, worker or replayer, in one line.

    ``Client.connect(..., plugins=[SagaloomPlugin(services={...})])`` (or ``Worker(...,
    plugins=[...])``, ``Replayer(..., plugins=[...])``):

    * the data converter: pydantic payloads, and failures raised on purpose (``ApplicationError``)
      written without a Python traceback; a payload codec already set is kept;
    * the workflow sandbox passes ``sagaloom`` through, so a saga module — even a single-file
      script that also builds its worker — needs no passthrough argument;
    * workers get the HTTP participant activity (``sagaloom.http``) with one pooled HTTP client,
      closed when the worker stops, and the sagas and interceptors given here;
    * a service with a limit gets a task queue of its own, which the worker polls too;
    * exclusive keys: the worker also serves the key shards' task queue (``sagaloom-keys``).

    A worker built from a client that has the plugin gets it too (the SDK passes client
    plugins on), so add it once.
    """

    def __init__(
        self,
        *,
        services: Mapping[str, str] | None = None,
        tokens: Mapping[str, SecretStr] | None = None,
        sagas: Sequence[type] = (),
        interceptors: Sequence[WorkerInterceptor | ClientInterceptor] = (),
        codec: PayloadCodec | None = None,
        encode_failures: bool | None = None,
        http: bool = True,
        reply_secret: SecretStr | None = None,
        nats_url: str | None = None,
        nats_namespace: str | None = None,
        nats_limits: StreamLimits | None = None,
        breakers: Breakers | None = None,
        limits: Mapping[str, ServiceLimit] | None = None,
        payloads: PayloadStore | None = None,
        drawings_url: str | None = None,
        config: WorkerConfig | None = None,
    ) -> None:
        """Create the plugin.

        Configuration takes one path: the environment is read once, into a
        :class:`WorkerConfig`, unless ``config`` is given (then it is not read at all); what an
        argument says wins over the configuration.

        Args:
            services: Participant base URLs by service name. None: from the environment
                (``SAGALOOM_SERVICE_<NAME>``, with ``SAGALOOM_SERVICE_<NAME>_TOKEN``).
            tokens: Bearer token per service (with explicit ``services``).
            sagas: Saga workflow classes to register on workers.
            interceptors: Client or worker interceptors to add.
            codec: A payload codec (for example ``EncryptionCodec``). None: the client's, else
                the encryption keys of ``SAGALOOM_ENCRYPTION_KEYS`` (read whatever
                ``services`` says: encryption is never turned off by configuring in code).
            encode_failures: Move failure messages into encoded (encrypted) attributes. None:
                ``SAGALOOM_ENCODE_FAILURES``.
            http: Register the HTTP participant activity (False when a test registers its own
                activity under that name).
            reply_secret: Secret of the reply tokens sent with commands (the workers' reply
                endpoints check them). None: ``SAGALOOM_REPLY_SECRET`` with ``services=None``,
                else a random one.
            nats_url: NATS JetStream for ``Command`` steps and lifecycle events; registers the
                broker activities. None: ``SAGALOOM_NATS_URL`` with ``services=None``.
            nats_namespace: The broker namespace (subjects, streams, consumers). None:
                ``SAGALOOM_NATS_NAMESPACE`` with ``services=None``, else ``sagaloom``.
            nats_limits: Bounds of the replies and dead-letter streams. None:
                ``SAGALOOM_NATS_MAX_MSGS``/``_MAX_BYTES`` with ``services=None``, else defaults.
            breakers: The per-service breakers HTTP and ``Command`` steps wait for while their
                service is down.
                None: ``SAGALOOM_BREAKER*`` with ``services=None``, else on with the defaults;
                ``Breakers(None)``: off.
            limits: Services whose HTTP calls are limited in rate (all workers together) or
                concurrency (per worker). None: ``SAGALOOM_SERVICE_<NAME>_CALLS_PER_SECOND``
                and ``_MAX_CONCURRENT_CALLS`` with ``services=None``, else none.
            payloads: Where payloads over the threshold go, history keeping a reference. None:
                ``SAGALOOM_PAYLOAD_*`` with ``services=None``, else NATS JetStream's object
                store when ``nats_url`` is given (off without). A store the client's data
                converter already has is kept.
            drawings_url: The codec server that draws runs (``saga codec-server --module``):
                each run's live details in the Web UI link to its drawing there. None:
                ``SAGALOOM_DRAWINGS_URL`` with ``services=None``, else no link. One per worker
                process (the last plugin made sets it).
            config: The worker configuration to take every setting from that no argument gives
                (``SagaloomPlugin.from_config``). None: the environment's
                (``WorkerConfig.from_env``), of which only the encryption settings apply when
                ``services`` is given. Encryption keys absent from a given configuration are
                still taken from ``SAGALOOM_ENCRYPTION_KEYS``.
        """
        given = config is not None
        config = config or WorkerConfig.from_env()  # the one read of the environment
        if services is None or given:
            services = config.services if services is None else services
            tokens = config.service_tokens if tokens is None else tokens
            reply_secret = reply_secret or config.reply_secret
            nats_url = nats_url or config.nats_url
            nats_namespace = nats_namespace or config.nats_namespace
            nats_limits = nats_limits or StreamLimits(config.nats_max_msgs, config.nats_max_bytes)
            breakers = breakers or config.breakers()
            limits = limits if limits is not None else config.service_limits()
            payloads = payloads or config.payloads()
            drawings_url = drawings_url or config.drawings_url
        if drawings_url is not None:
            LINKS.drawings = drawings_url
        self.payloads = payloads or PayloadStore.from_settings("auto", nats_url=nats_url)
        """Where this plugin's data converter stores large payloads (``kind="off"``: nowhere)."""
        signer = ReplySigner(reply_secret)
        breakers = breakers or Breakers(BreakerSettings())
        self.participant = HttpParticipant(
            services, tokens=tokens, replies=signer, breakers=breakers
        )
        """The HTTP participant whose activity workers run."""
        names = BrokerNames(nats_namespace or DEFAULT_NAMESPACE)
        self.broker = Broker(nats_url, signer, names, nats_limits, breakers) if nats_url else None
        """The broker connection whose activities workers run (with ``nats_url``)."""
        if self.broker is not None and self.payloads.on:  # a reply's data goes to the store
            self.broker.reply_limit = MAX_STORED_REPLY_BYTES
        activities: list[Callable[..., Any]] = [self.participant.call] if http else []
        workflows = list(sagas)
        if http and breakers.enabled:
            activities.append(self.participant.probe)
        if self.broker is not None:
            activities += [self.broker.send, self.broker.ask, self.broker.publish_events]
            if breakers.enabled:
                activities += [self.broker.probe_consumers, self.broker.command_silent]
        if breakers.enabled and (http or self.broker is not None):
            workflows.append(ServiceBreaker)
        if http:  # a saga with notify_participants tells its HTTP services that it ended
            workflows.append(EndNotice)
        # exclusive keys: the saga's local activities (the shards run beside, on their own task
        # queue; listed here for the replayer)
        workflows.append(KeyShard)
        workflows.append(ItemsWorkflow)  # the batches of a fan-out (ForEach) step
        activities += [ask_key, release_keys]
        self.limits = dict(limits or {})
        """Limited services (each has a task queue of its own that workers poll)."""
        if self.limits and http:
            interceptors = [*interceptors, ServiceRouting(self.limits)]
        self._codec = codec
        keys = config.encryption_keys
        self._env_codec = (  # encryption is never turned off by configuring in code
            None
            if codec is not None
            else EncryptionCodec.from_spec(keys.get_secret_value())
            if keys is not None
            else codec_from_env()
            if given
            else None
        )
        self._encode_failures = (
            config.encode_failures if encode_failures is None else encode_failures
        )
        super().__init__(
            "sagaloom",
            data_converter=self._converter,
            workflow_runner=_with_passthrough,
            workflows=workflows or None,
            activities=activities or None,
            interceptors=list(interceptors) or None,
            run_context=self._close_participant,
        )

    @classmethod
    def from_config(
        cls,
        config: WorkerConfig,
        *,
        services: Mapping[str, str] | None = None,
        broker: bool = True,
    ) -> SagaloomPlugin:
        """The plugin a worker configuration describes (the one place config meets plugin).

        Args:
            config: Its services, service tokens and reply secret, and its NATS settings.
            services: Participant URLs instead of ``config.services``.
            broker: Use ``config.nats_url`` (False: no broker activities, as ``build_worker``
                runs no reply consumers).
        """
        if not broker:
            config = dataclasses.replace(config, nats_url=None)
        return cls(services=services, config=config)

    def configure_worker(self, config: TemporalWorkerConfig) -> TemporalWorkerConfig:
        """See base class; then the saga modules checked once go through the sandbox.

        The sandbox would re-import a saga's module for every run; each registered saga's
        builders are checked once here instead (``sagaloom/worker/_purity.py``), and the modules
        whose sagas pass are passed through. One that does not stays sandboxed, as before.
        """
        config = super().configure_worker(config)
        runner = config.get("workflow_runner")
        if not isinstance(runner, SandboxedWorkflowRunner):
            return config

        def prepare(cls: type) -> None:
            runner.prepare_workflow(workflow._Definition.must_from_class(cls))

        modules = passable_modules(list(config.get("workflows") or ()), prepare)
        if modules:
            restrictions = runner.restrictions.with_passthrough_modules(*modules)
            config["workflow_runner"] = dataclasses.replace(runner, restrictions=restrictions)
        return config

    def _converter(self, existing: DataConverter | None) -> DataConverter:
        codec = (
            self._codec
            or (existing.payload_codec if existing is not None else None)
            or self._env_codec
        )
        storage = (existing.external_storage if existing is not None else None) or (
            self.payloads.external_storage()
        )
        return converter(codec, encode_failures=self._encode_failures, storage=storage)

    async def run_worker(self, worker: Worker, next: Callable[[Worker], Awaitable[None]]) -> None:
        """Run ``worker``, and beside it the key shards' worker and one per limited service.

        The key shards (exclusive keys) run on their own task queue, so a saga asking for a key
        from a local activity never waits for a workflow task slot that sagas hold. Each limited
        service's worker polls ``<task queue>@<service>`` for the HTTP activity only, with the
        service's rate as the queue's rate limit (the server enforces it across all workers)
        and its concurrency as its activity slots.
        """
        if "@" in worker.task_queue or worker.task_queue == KEY_QUEUE:
            await super().run_worker(worker, next)
            return
        plain = Client(  # the same connection and converter, without plugins (no recursion)
            worker.client.service_client,
            namespace=worker.client.namespace,
            data_converter=worker.client.data_converter,
        )
        config = worker.config()
        shutdown = config.get("graceful_shutdown_timeout", timedelta(0))
        async with contextlib.AsyncExitStack() as stack:
            connection = id(worker.client.service_client)
            if connection not in _SERVING_KEYS:  # one per connection: a second is refused
                keys = Worker(
                    plain,
                    task_queue=KEY_QUEUE,
                    workflows=[KeyShard],
                    activities=[closed_holders],
                    workflow_runner=_with_passthrough(config.get("workflow_runner")),
                    graceful_shutdown_timeout=shutdown,
                )
                await stack.enter_async_context(keys)
                _SERVING_KEYS.add(connection)
                stack.callback(_SERVING_KEYS.discard, connection)
            for service, limit in self.limits.items():
                limited = Worker(
                    plain,
                    task_queue=limit_queue(worker.task_queue, service),
                    activities=[self.participant.call],
                    max_concurrent_activities=limit.max_concurrent or 100,
                    max_task_queue_activities_per_second=limit.calls_per_second,
                    graceful_shutdown_timeout=shutdown,
                )
                await stack.enter_async_context(limited)
            await super().run_worker(worker, next)

    @contextlib.asynccontextmanager
    async def _close_participant(self) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await self.participant.aclose()
            if self.broker is not None:
                await self.broker.aclose()


def _with_passthrough(existing: WorkflowRunner | None) -> WorkflowRunner:
    """The worker's workflow runner, with sagaloom passed through its sandbox."""
    if existing is None:
        existing = SandboxedWorkflowRunner()
    if not isinstance(existing, SandboxedWorkflowRunner):
        return existing  # an unsandboxed runner needs nothing
    restrictions = existing.restrictions.with_passthrough_modules(*PASSTHROUGH)
    return dataclasses.replace(existing, restrictions=restrictions)
