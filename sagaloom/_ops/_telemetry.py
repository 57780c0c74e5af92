"""Metrics (Prometheus, through the Temporal runtime) and optional OpenTelemetry tracing."""

from __future__ import annotations

from typing import TYPE_CHECKING

from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

if TYPE_CHECKING:
    from temporalio.contrib.opentelemetry import OpenTelemetryPlugin

__all__ = ["TracingUnavailableError", "metrics_runtime", "tracing_plugin"]


class TracingUnavailableError(RuntimeError):
    """Tracing was asked for but OpenTelemetry is not installed."""


def metrics_runtime(address: str) -> Runtime:
    """A Temporal runtime that serves the SDK's and the sagas' metrics at ``address``.

    SDK metrics are prefixed ``temporal_``; saga metrics are named ``sagaloom_*`` (see
    ``sagaloom._ops._metrics``). Create one per process, before the client.
    """
    return Runtime(telemetry=TelemetryConfig(metrics=PrometheusConfig(bind_address=address)))


def tracing_plugin() -> OpenTelemetryPlugin:
    """The SDK's OpenTelemetry plugin, for the client (workers built from it inherit it).

    ``OpenTelemetryPlugin`` is the SDK's recommended path (its ``TracingInterceptor`` is labelled
    legacy: zero-duration workflow spans). Spans go to the global tracer provider, which the
    application configures — create it with ``temporalio.contrib.opentelemetry.
    create_tracer_provider()`` so workflow spans are replay-safe — for example with an OTLP
    exporter. The HTTP participant forwards the current context as ``traceparent``.

    Raises:
        TracingUnavailableError: without ``pip install 'sagaloom[tracing]'``.
    """
    try:
        from temporalio.contrib.opentelemetry import OpenTelemetryPlugin
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise TracingUnavailableError(
            "tracing needs OpenTelemetry: pip install 'sagaloom[tracing]'"
        ) from err
    return OpenTelemetryPlugin(add_temporal_spans=True)
