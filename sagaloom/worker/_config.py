"""Worker configuration: flags override environment variables, which override defaults."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TypeVar

from pydantic import SecretStr

from sagaloom._names import DEFAULT_TASK_QUEUE
from sagaloom._protocol import DEFAULT_NAMESPACE, namespace_problem

__all__ = ["DEFAULT_TASK_QUEUE", "VERSIONING_BEHAVIORS", "ConfigError", "WorkerConfig"]

"""Task queue of the example sagas and of ``saga start`` unless told otherwise."""

VERSIONING_BEHAVIORS = ("pinned", "auto-upgrade")
"""What a versioned saga does when a newer build becomes current."""

T = TypeVar("T", int, float)

_SERVICE_PREFIX = "SAGALOOM_SERVICE_"
_TOKEN_SUFFIX = "_TOKEN"


def _flag(env: Mapping[str, str], name: str) -> bool:
    return env.get(name, "").lower() in ("1", "true", "yes")


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the variable or flag."""


def _positive(env: Mapping[str, str], name: str, kind: type[T]) -> T | None:
    """A positive ``int`` or ``float`` from ``env[name]``; None when unset."""
    raw = env.get(name)
    if not raw:
        return None
    try:
        value = kind(raw)
    except ValueError:
        what = "an integer" if kind is int else "a number"
        raise ConfigError(f"{name}={raw!r} is not {what}") from None
    if value <= 0:
        raise ConfigError(f"{name}={raw!r} must be positive")
    return value


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    value = _positive(env, name, int)
    return default if value is None else value


def _choice(env: Mapping[str, str], name: str, choices: tuple[str, ...]) -> str:
    raw = env.get(name) or choices[0]
    if raw not in choices:
        raise ConfigError(f"{name}={raw!r} must be one of {', '.join(choices)}")
    return raw


def _rate(env: Mapping[str, str], name: str) -> float | None:
    return _positive(env, name, float)


def _address(env: Mapping[str, str], name: str) -> str | None:
    raw = env.get(name)
    if not raw:
        return None
    host, sep, port = raw.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"{name}={raw!r} is not host:port")
    return raw


@dataclass(frozen=True)
class WorkerConfig:
    """Everything a worker process needs; see :meth:`from_env` for the variable names."""

    address: str = "localhost:7233"
    """Temporal frontend ``host:port`` (``TEMPORAL_ADDRESS``)."""
    namespace: str = "default"
    """Temporal namespace (``TEMPORAL_NAMESPACE``)."""
    task_queue: str = DEFAULT_TASK_QUEUE
    """Task queue to poll (``SAGALOOM_TASK_QUEUE``)."""
    services: Mapping[str, str] = field(default_factory=dict)
    """Participant service base URLs by name (``SAGALOOM_SERVICE_<NAME>=<url>``)."""
    saga_modules: tuple[str, ...] = ()
    """Extra modules whose sagas to register (``SAGALOOM_SAGA_MODULES``, comma-separated)."""
    max_concurrent_activities: int = 100
    """Activity slots (``SAGALOOM_MAX_CONCURRENT_ACTIVITIES``)."""
    max_concurrent_workflow_tasks: int = 100
    """Workflow task slots (``SAGALOOM_MAX_CONCURRENT_WORKFLOW_TASKS``)."""
    max_cached_workflows: int = 1000
    """Sticky cache size, which bounds worker memory (``SAGALOOM_MAX_CACHED_WORKFLOWS``)."""
    tuner: str = "fixed"
    """``fixed`` slot counts above, or ``resource``: slots follow CPU and memory use
    (targets 90% CPU, 80% memory) (``SAGALOOM_TUNER``)."""
    poller: str = "simple"
    """``simple`` (5 pollers per task type) or ``autoscaling`` (the server's backlog steers
    1 to 100 pollers) (``SAGALOOM_POLLER``)."""
    max_activities_per_second: float | None = None
    """Activity rate limit of this worker (``SAGALOOM_MAX_ACTIVITIES_PER_SECOND``)."""
    max_task_queue_activities_per_second: float | None = None
    """Activity rate limit of the whole task queue, all workers together
    (``SAGALOOM_MAX_TASK_QUEUE_ACTIVITIES_PER_SECOND``)."""
    processes: int = 1
    """Worker processes run by ``saga worker`` on this host (``SAGALOOM_PROCESSES``)."""
    metrics_address: str | None = None
    """``host:port`` of the Prometheus endpoint, off when None (``SAGALOOM_METRICS_ADDRESS``)."""
    health_address: str | None = None
    """``host:port`` of ``/healthz`` and ``/readyz``; None: off (``SAGALOOM_HEALTH_ADDRESS``)."""
    tracing: bool = False
    """Add OpenTelemetry tracing interceptors (``SAGALOOM_TRACING=true``; needs the extra)."""
    service_tokens: Mapping[str, SecretStr] = field(default_factory=dict)
    """Bearer tokens per participant (``SAGALOOM_SERVICE_<NAME>_TOKEN``): sent as
    ``Authorization``, never written to history or logs."""
    reply_secret: SecretStr | None = None
    """Secret of the reply tokens, the same on every worker (``SAGALOOM_REPLY_SECRET``); without
    it each process makes its own, and a reply is taken only by the worker that sent the
    command."""
    encryption_keys: SecretStr | None = None
    """Payload encryption keys (``SAGALOOM_ENCRYPTION_KEYS``, see ``sagaloom._codec``)."""
    encode_failures: bool = False
    """Encode failure messages too (``SAGALOOM_ENCODE_FAILURES=true``)."""
    graceful_shutdown: timedelta = timedelta(seconds=10)
    """Time in-flight activities get on SIGTERM (``SAGALOOM_GRACEFUL_SHUTDOWN_SECONDS``)."""
    nats_url: str | None = None
    """NATS JetStream for event-driven participants, lifecycle events and triggers
    (``SAGALOOM_NATS_URL``, for example ``nats://127.0.0.1:4222``); None: no broker."""
    nats_namespace: str = DEFAULT_NAMESPACE
    """Broker namespace (``SAGALOOM_NATS_NAMESPACE``, default ``sagaloom``): the first token of
    every subject, the prefix of every stream and durable consumer. Applications sharing a NATS
    server each take their own; all workers of one application the same."""
    nats_max_msgs: int = 100_000
    """Messages kept at most in each of the replies and dead-letter streams
    (``SAGALOOM_NATS_MAX_MSGS``): at the bound the oldest are discarded, logged and counted."""
    nats_max_bytes: int = 256 * 1024 * 1024
    """Bytes kept at most in each of those streams (``SAGALOOM_NATS_MAX_BYTES``)."""
    triggers: tuple[str, ...] = ()
    """``SUBJECT=SagaName`` pairs: each message on the subject starts that saga
    (``SAGALOOM_TRIGGERS``, comma-separated); needs :attr:`nats_url`."""
    sandboxed: bool = True
    """Run workflow code in the SDK's sandbox (``SAGALOOM_SANDBOX=on``, the default). ``off``
    runs it unsandboxed: about a third less worker CPU per saga (docs/benchmarks.md), but a
    non-deterministic call in your own step builders (a clock, randomness, I/O) is no longer
    caught; the engine's runtime itself is deterministic either way (replay-tested)."""
    deployment: str | None = None
    """Worker Versioning: the worker deployment this worker belongs to
    (``SAGALOOM_DEPLOYMENT``); with :attr:`build_id`, or neither (unversioned)."""
    build_id: str | None = None
    """Worker Versioning: this worker's build id within :attr:`deployment`
    (``SAGALOOM_BUILD_ID``), for example the image tag or the commit."""
    versioning: str = "pinned"
    """With Worker Versioning, what a saga does when a newer build becomes current: ``pinned``
    (finishes on the build it started on; the default) or ``auto-upgrade`` (moves to the current
    build at its next task; then code changes need ``patch=``) (``SAGALOOM_VERSIONING``)."""

    def __post_init__(self) -> None:
        if (self.deployment is None) != (self.build_id is None):
            raise ConfigError(
                "SAGALOOM_DEPLOYMENT / --deployment and SAGALOOM_BUILD_ID / --build-id go "
                "together: set both (Worker Versioning) or neither"
            )
        if self.deployment is not None and "." in self.deployment:
            # Temporal names a version "<deployment>.<build id>"
            raise ConfigError(f"deployment {self.deployment!r} must not contain '.'")
        if self.nats_url is not None and not self.nats_url.startswith(("nats://", "tls://")):
            raise ConfigError(f"SAGALOOM_NATS_URL={self.nats_url!r} is not a nats:// URL")
        if (problem := namespace_problem(self.nats_namespace)) is not None:
            raise ConfigError(f"SAGALOOM_NATS_NAMESPACE: {problem}")
        if self.triggers and self.nats_url is None:
            raise ConfigError("triggers (SAGALOOM_TRIGGERS / --trigger) need SAGALOOM_NATS_URL")
        if self.versioning not in VERSIONING_BEHAVIORS:
            raise ConfigError(
                f"versioning {self.versioning!r} must be one of {', '.join(VERSIONING_BEHAVIORS)}"
            )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> WorkerConfig:
        """Read the configuration from environment variables.

        Raises:
            ConfigError: naming the variable whose value is invalid.
        """
        env = os.environ if env is None else env
        services = {
            name[len(_SERVICE_PREFIX) :].lower(): url
            for name, url in env.items()
            if name.startswith(_SERVICE_PREFIX) and not name.endswith(_TOKEN_SUFFIX) and url
        }
        tokens = {
            name[len(_SERVICE_PREFIX) : -len(_TOKEN_SUFFIX)].lower(): SecretStr(value)
            for name, value in env.items()
            if name.startswith(_SERVICE_PREFIX) and name.endswith(_TOKEN_SUFFIX) and value
        }
        for name, url in services.items():
            if not url.startswith(("http://", "https://")):
                raise ConfigError(f"{_SERVICE_PREFIX}{name.upper()}={url!r} is not an http(s) URL")
        modules = tuple(
            m.strip() for m in env.get("SAGALOOM_SAGA_MODULES", "").split(",") if m.strip()
        )
        keys = env.get("SAGALOOM_ENCRYPTION_KEYS", "").strip()
        reply_secret = env.get("SAGALOOM_REPLY_SECRET", "").strip()
        return cls(
            reply_secret=SecretStr(reply_secret) if reply_secret else None,
            service_tokens=tokens,
            encryption_keys=SecretStr(keys) if keys else None,
            encode_failures=_flag(env, "SAGALOOM_ENCODE_FAILURES"),
            tuner=_choice(env, "SAGALOOM_TUNER", ("fixed", "resource")),
            poller=_choice(env, "SAGALOOM_POLLER", ("simple", "autoscaling")),
            max_activities_per_second=_rate(env, "SAGALOOM_MAX_ACTIVITIES_PER_SECOND"),
            max_task_queue_activities_per_second=_rate(
                env, "SAGALOOM_MAX_TASK_QUEUE_ACTIVITIES_PER_SECOND"
            ),
            processes=_int(env, "SAGALOOM_PROCESSES", 1),
            metrics_address=_address(env, "SAGALOOM_METRICS_ADDRESS"),
            health_address=_address(env, "SAGALOOM_HEALTH_ADDRESS"),
            tracing=_flag(env, "SAGALOOM_TRACING"),
            address=env.get("TEMPORAL_ADDRESS") or cls.address,
            namespace=env.get("TEMPORAL_NAMESPACE") or cls.namespace,
            task_queue=env.get("SAGALOOM_TASK_QUEUE") or DEFAULT_TASK_QUEUE,
            services=services,
            saga_modules=modules,
            max_concurrent_activities=_int(env, "SAGALOOM_MAX_CONCURRENT_ACTIVITIES", 100),
            max_concurrent_workflow_tasks=_int(env, "SAGALOOM_MAX_CONCURRENT_WORKFLOW_TASKS", 100),
            max_cached_workflows=_int(env, "SAGALOOM_MAX_CACHED_WORKFLOWS", 1000),
            graceful_shutdown=timedelta(
                seconds=_int(env, "SAGALOOM_GRACEFUL_SHUTDOWN_SECONDS", 10)
            ),
            sandboxed=_choice(env, "SAGALOOM_SANDBOX", ("on", "off")) == "on",
            nats_url=env.get("SAGALOOM_NATS_URL") or None,
            nats_namespace=env.get("SAGALOOM_NATS_NAMESPACE") or DEFAULT_NAMESPACE,
            nats_max_msgs=_int(env, "SAGALOOM_NATS_MAX_MSGS", 100_000),
            nats_max_bytes=_int(env, "SAGALOOM_NATS_MAX_BYTES", 256 * 1024 * 1024),
            triggers=tuple(
                t.strip() for t in env.get("SAGALOOM_TRIGGERS", "").split(",") if t.strip()
            ),
            deployment=env.get("SAGALOOM_DEPLOYMENT") or None,
            build_id=env.get("SAGALOOM_BUILD_ID") or None,
            versioning=_choice(env, "SAGALOOM_VERSIONING", VERSIONING_BEHAVIORS),
        )

    def to_env(self) -> dict[str, str]:
        """The environment variables that reproduce this configuration.

        For child processes, containers and manifests; the inverse of :meth:`from_env`.
        """
        env = {
            "TEMPORAL_ADDRESS": self.address,
            "TEMPORAL_NAMESPACE": self.namespace,
            "SAGALOOM_TASK_QUEUE": self.task_queue,
            "SAGALOOM_SAGA_MODULES": ",".join(self.saga_modules),
            "SAGALOOM_MAX_CONCURRENT_ACTIVITIES": str(self.max_concurrent_activities),
            "SAGALOOM_MAX_CONCURRENT_WORKFLOW_TASKS": str(self.max_concurrent_workflow_tasks),
            "SAGALOOM_MAX_CACHED_WORKFLOWS": str(self.max_cached_workflows),
            "SAGALOOM_TUNER": self.tuner,
            "SAGALOOM_POLLER": self.poller,
            "SAGALOOM_PROCESSES": str(self.processes),
            "SAGALOOM_GRACEFUL_SHUTDOWN_SECONDS": str(int(self.graceful_shutdown.total_seconds())),
            "SAGALOOM_TRACING": "true" if self.tracing else "",
            "SAGALOOM_METRICS_ADDRESS": self.metrics_address or "",
            "SAGALOOM_HEALTH_ADDRESS": self.health_address or "",
            "SAGALOOM_MAX_ACTIVITIES_PER_SECOND": str(self.max_activities_per_second or ""),
            "SAGALOOM_MAX_TASK_QUEUE_ACTIVITIES_PER_SECOND": str(
                self.max_task_queue_activities_per_second or ""
            ),
        }
        env.update({f"{_SERVICE_PREFIX}{k.upper()}": v for k, v in self.services.items()})
        env.update(
            {
                f"{_SERVICE_PREFIX}{k.upper()}{_TOKEN_SUFFIX}": v.get_secret_value()
                for k, v in self.service_tokens.items()
            }
        )
        env["SAGALOOM_ENCRYPTION_KEYS"] = (
            self.encryption_keys.get_secret_value() if self.encryption_keys else ""
        )
        env["SAGALOOM_ENCODE_FAILURES"] = "true" if self.encode_failures else ""
        env["SAGALOOM_SANDBOX"] = "on" if self.sandboxed else "off"
        env["SAGALOOM_NATS_URL"] = self.nats_url or ""
        env["SAGALOOM_NATS_NAMESPACE"] = self.nats_namespace
        env["SAGALOOM_NATS_MAX_MSGS"] = str(self.nats_max_msgs)
        env["SAGALOOM_NATS_MAX_BYTES"] = str(self.nats_max_bytes)
        env["SAGALOOM_TRIGGERS"] = ",".join(self.triggers)
        env["SAGALOOM_DEPLOYMENT"] = self.deployment or ""
        env["SAGALOOM_BUILD_ID"] = self.build_id or ""
        env["SAGALOOM_VERSIONING"] = self.versioning
        env["SAGALOOM_REPLY_SECRET"] = (
            self.reply_secret.get_secret_value() if self.reply_secret else ""
        )
        return env
