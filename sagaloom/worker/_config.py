"""Worker configuration: flags override environment variables, which override defaults.

Every field is a row of one table, :data:`~sagaloom._config._settings.WORKER_SETTINGS`: its
variable, flag, default and meaning (docs/configuration.md is generated from it).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from pydantic import SecretStr

from sagaloom._config._settings import (
    CONCURRENCY_SUFFIX,
    RATE_SUFFIX,
    SERVICE_PREFIX,
    WORKER_SETTINGS,
    ConfigError,
    setting,
)
from sagaloom._saga._outage import BreakerSettings, ServiceLimit
from sagaloom._wire._names import DEFAULT_TASK_QUEUE
from sagaloom._wire._protocol import DEFAULT_NAMESPACE, namespace_problem
from sagaloom.participants._breakers import Breakers
from sagaloom.storage._stores import PayloadStore

__all__ = ["DEFAULT_TASK_QUEUE", "VERSIONING_BEHAVIORS", "ConfigError", "WorkerConfig"]

VERSIONING_BEHAVIORS = setting("versioning").choices
"""What a versioned saga does when a newer build becomes current."""


def _default(name: str) -> Any:
    return setting(name).default


@dataclass(frozen=True)
class WorkerConfig:
    """Everything a worker process needs.

    Each field's variable, ``saga worker`` flag, default and meaning are in the configuration
    table (docs/configuration.md), generated from the same settings as :meth:`from_env`.
    """

    address: str = _default("address")
    namespace: str = _default("namespace")
    task_queue: str = DEFAULT_TASK_QUEUE
    services: Mapping[str, str] = field(default_factory=dict)
    saga_modules: tuple[str, ...] = ()
    max_concurrent_activities: int = _default("max_concurrent_activities")
    max_concurrent_workflow_tasks: int = _default("max_concurrent_workflow_tasks")
    max_cached_workflows: int = _default("max_cached_workflows")
    tuner: str = _default("tuner")
    poller: str = _default("poller")
    max_activities_per_second: float | None = None
    max_task_queue_activities_per_second: float | None = None
    processes: int = _default("processes")
    metrics_address: str | None = None
    health_address: str | None = None
    tracing: bool = False
    service_tokens: Mapping[str, SecretStr] = field(default_factory=dict)
    reply_secret: SecretStr | None = None
    encryption_keys: SecretStr | None = None
    encode_failures: bool = False
    graceful_shutdown: timedelta = timedelta(seconds=10)
    nats_url: str | None = None
    nats_namespace: str = DEFAULT_NAMESPACE
    nats_max_msgs: int = _default("nats_max_msgs")
    nats_max_bytes: int = _default("nats_max_bytes")
    drawings_url: str | None = None
    payload_store: str = _default("payload_store")
    payload_threshold: int = _default("payload_threshold")
    payload_bucket: str = _default("payload_bucket")
    payload_prefix: str = ""
    payload_endpoint: str | None = None
    max_input_bytes: int = _default("max_input_bytes")
    payload_sweep: timedelta = timedelta(hours=1)
    triggers: tuple[str, ...] = ()
    sandboxed: bool = True
    breaker: bool = True
    breaker_threshold: int = _default("breaker_threshold")
    breaker_window: timedelta = timedelta(seconds=30)
    breaker_probe: timedelta = timedelta(seconds=5)
    breaker_release_rate: float = _default("breaker_release_rate")
    outage_budget: timedelta = timedelta(hours=1)
    outage_budgets: Mapping[str, timedelta] = field(default_factory=dict)
    service_rates: Mapping[str, float] = field(default_factory=dict)
    service_concurrency: Mapping[str, int] = field(default_factory=dict)
    deployment: str | None = None
    build_id: str | None = None
    versioning: str = _default("versioning")

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
        for name in sorted({*self.service_rates, *self.service_concurrency} - {*self.services}):
            raise ConfigError(
                f"{SERVICE_PREFIX}{name.upper()}{RATE_SUFFIX} / {CONCURRENCY_SUFFIX}: a limit "
                f"for service {name!r}, which has no URL ({SERVICE_PREFIX}{name.upper()})"
            )
        if self.drawings_url is not None and not self.drawings_url.startswith(
            ("http://", "https://")
        ):
            raise ConfigError(f"SAGALOOM_DRAWINGS_URL={self.drawings_url!r} is not an http(s) URL")
        if self.payload_store == "nats" and self.nats_url is None:
            raise ConfigError("SAGALOOM_PAYLOAD_STORE=nats needs SAGALOOM_NATS_URL")
        if self.payload_store == "s3" and not self.payload_bucket:
            raise ConfigError("SAGALOOM_PAYLOAD_STORE=s3 needs SAGALOOM_PAYLOAD_BUCKET")
        if self.versioning not in VERSIONING_BEHAVIORS:
            raise ConfigError(
                f"versioning {self.versioning!r} must be one of {', '.join(VERSIONING_BEHAVIORS)}"
            )

    def breakers(self) -> Breakers:
        """The per-service breakers these settings describe (off with ``breaker=False``)."""
        if not self.breaker:
            return Breakers(None)
        settings = BreakerSettings(
            threshold=self.breaker_threshold,
            window=self.breaker_window,
            probe_every=self.breaker_probe,
            release_per_second=self.breaker_release_rate,
            outage_budget=self.outage_budget,
        )
        return Breakers(settings, self.outage_budgets)

    def payloads(self) -> PayloadStore:
        """The payload store these settings name (``off`` included)."""
        return PayloadStore.from_settings(
            self.payload_store,
            nats_url=self.nats_url,
            bucket=self.payload_bucket,
            prefix=self.payload_prefix,
            endpoint=self.payload_endpoint,
            threshold=self.payload_threshold,
        )

    def service_limits(self) -> dict[str, ServiceLimit]:
        """The services whose calls are limited, and their limits."""
        return {
            name: ServiceLimit(
                calls_per_second=self.service_rates.get(name),
                max_concurrent=self.service_concurrency.get(name),
            )
            for name in sorted({*self.service_rates, *self.service_concurrency})
        }

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> WorkerConfig:
        """Read the configuration from environment variables (unset or empty: the default).

        Raises:
            ConfigError: naming the variable whose value is invalid.
        """
        env = os.environ if env is None else env
        return cls(**{s.field: s.read(env) for s in WORKER_SETTINGS})

    def to_env(self) -> dict[str, str]:
        """The environment variables that reproduce this configuration.

        For child processes, containers and manifests; the inverse of :meth:`from_env`.
        """
        env: dict[str, str] = {}
        for s in WORKER_SETTINGS:
            env.update(s.write(getattr(self, s.field)))
        return env
