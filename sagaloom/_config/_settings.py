"""The one table of configuration settings: each names its field, variable, flag and meaning.

:class:`~sagaloom.worker.WorkerConfig`'s ``from_env`` and ``to_env``, the ``saga worker`` /
``saga dev`` flags and the documentation's configuration table are all generated from
:data:`WORKER_SETTINGS` (``tests/worker/test_config.py`` fails when the docs drift from it). The
variables the ``saga`` command itself reads are in :data:`CLI_SETTINGS`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal

from pydantic import SecretStr

from sagaloom._wire._names import DEFAULT_TASK_QUEUE
from sagaloom._wire._protocol import DEFAULT_NAMESPACE

__all__ = [
    "BUDGET_SUFFIX",
    "CLI_SETTINGS",
    "CONCURRENCY_SUFFIX",
    "RATE_SUFFIX",
    "SERVICE_PREFIX",
    "TOKEN_SUFFIX",
    "WORKER_SETTINGS",
    "ConfigError",
    "Setting",
    "markdown_table",
    "read_bool",
    "setting",
]

SERVICE_PREFIX = "SAGALOOM_SERVICE_"
TOKEN_SUFFIX = "_TOKEN"
BUDGET_SUFFIX = "_OUTAGE_BUDGET_SECONDS"
RATE_SUFFIX = "_CALLS_PER_SECOND"
CONCURRENCY_SUFFIX = "_MAX_CONCURRENT_CALLS"
_SUFFIXES = (TOKEN_SUFFIX, BUDGET_SUFFIX, RATE_SUFFIX, CONCURRENCY_SUFFIX)

Kind = Literal[
    "text",  # a string; empty means the default
    "optional",  # a string or None
    "count",  # a positive integer
    "rate",  # a positive number or None
    "seconds",  # a positive integer of seconds, a timedelta
    "bool",  # true/false (1/0, yes/no, on/off)
    "choice",  # one of ``choices``
    "address",  # host:port or None
    "list",  # comma-separated in the variable; the flag is repeatable and adds
    "secret",  # a SecretStr or None; no flag (flags show in ps)
    "services",  # SAGALOOM_SERVICE_<NAME>=<url>; the flag is NAME=URL, repeatable
    "budgets",  # SAGALOOM_SERVICE_<NAME>_OUTAGE_BUDGET_SECONDS=<seconds>; no flag
    "rates",  # SAGALOOM_SERVICE_<NAME>_CALLS_PER_SECOND=<number>; no flag
    "concurrency",  # SAGALOOM_SERVICE_<NAME>_MAX_CONCURRENT_CALLS=<integer>; no flag
    "tokens",  # SAGALOOM_SERVICE_<NAME>_TOKEN=<token>; no flag
]

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off", "")


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the variable or flag."""


def read_bool(env: Mapping[str, str], name: str, default: bool = False) -> bool:
    """A true/false variable, read the same way wherever it is read.

    Raises:
        ConfigError: naming the variable, for anything but 1/0, true/false, yes/no, on/off.
    """
    raw = env.get(name)
    if raw is None:
        return default
    word = raw.strip().lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return default if word == "" else False
    raise ConfigError(f"{name}={raw!r} must be true or false (1/0, yes/no, on/off)")


@dataclass(frozen=True)
class Setting:
    """One configuration setting: where it is read from and what it means."""

    field: str
    """The :class:`~sagaloom.worker.WorkerConfig` field (or a name, for the CLI's own)."""
    env: str
    """Its environment variable (a pattern such as ``SAGALOOM_SERVICE_<NAME>`` for maps)."""
    kind: Kind
    default: Any
    help: str
    """One line for the docs and ``--help``."""
    flag: str | None = None
    """Its ``saga worker`` flag; None: environment only (secrets, for example)."""
    on_dev: bool = False
    """Also a flag of ``saga dev``."""
    choices: tuple[str, ...] = ()
    words: tuple[str, str] = ("true", "false")
    """How ``to_env`` writes a bool (``SAGALOOM_SANDBOX`` says on/off)."""
    metavar: str | None = None
    off: str = ""
    """A bool's meaning when false (the other value's meaning is :attr:`help`)."""

    def meaning(self, value: Any) -> str:
        """What ``value`` of this setting means: :attr:`help`, or :attr:`off` for a false bool."""
        return self.off if self.kind == "bool" and not value and self.off else self.help

    def flag_help(self) -> str:
        """The help of this setting's flag: the meaning of the value the flag sets."""
        if self.kind != "bool":
            return f"{self.help} ({self.env})"
        value = not self.default
        word = self.words[0] if value else self.words[1]
        return f"{self.meaning(value)} (sets {self.env}={word})"

    def read(self, env: Mapping[str, str]) -> Any:
        """This setting's value from ``env``, its default when unset or empty.

        Raises:
            ConfigError: naming the variable when its value is invalid.
        """
        raw = (env.get(self.env) or "").strip()
        if self.kind == "bool":
            return read_bool(env, self.env, self.default)
        if self.kind == "services":
            return _services(env)
        if self.kind == "tokens":
            return _tokens(env)
        if self.kind == "budgets":
            return {k: timedelta(seconds=v) for k, v in _per_service(env, BUDGET_SUFFIX, int)}
        if self.kind == "rates":
            return dict(_per_service(env, RATE_SUFFIX, float))
        if self.kind == "concurrency":
            return dict(_per_service(env, CONCURRENCY_SUFFIX, int))
        if not raw:
            return self.default
        return self.parse(raw, self.env)

    def parse(self, raw: str, name: str) -> Any:
        """Parse one value given as ``raw`` under ``name`` (a variable or a flag).

        Raises:
            ConfigError: naming ``name`` when the value is invalid.
        """
        if self.kind in ("count", "seconds", "rate"):
            number = _positive(raw, name, float if self.kind == "rate" else int)
            return timedelta(seconds=number) if self.kind == "seconds" else number
        if self.kind == "choice" and raw not in self.choices:
            raise ConfigError(f"{name}={raw!r} must be one of {', '.join(self.choices)}")
        if self.kind == "address":
            host, sep, port = raw.rpartition(":")
            if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ConfigError(f"{name}={raw!r} is not host:port")
        if self.kind == "list":
            return tuple(item.strip() for item in raw.split(",") if item.strip())
        if self.kind == "secret":
            return SecretStr(raw)
        return raw

    def write(self, value: Any) -> dict[str, str]:
        """The variables that reproduce ``value`` (the inverse of :meth:`read`)."""
        if self.kind == "services":
            return {f"{SERVICE_PREFIX}{k.upper()}": v for k, v in value.items()}
        if self.kind == "tokens":
            return {
                f"{SERVICE_PREFIX}{k.upper()}{TOKEN_SUFFIX}": v.get_secret_value()
                for k, v in value.items()
            }
        if self.kind == "budgets":
            return {
                f"{SERVICE_PREFIX}{k.upper()}{BUDGET_SUFFIX}": str(int(v.total_seconds()))
                for k, v in value.items()
            }
        if self.kind in ("rates", "concurrency"):
            suffix = RATE_SUFFIX if self.kind == "rates" else CONCURRENCY_SUFFIX
            return {f"{SERVICE_PREFIX}{k.upper()}{suffix}": str(v) for k, v in value.items()}
        if value is None:
            text = ""
        elif self.kind == "bool":
            text = self.words[0] if value else self.words[1]
        elif self.kind == "seconds":
            text = str(int(value.total_seconds()))
        elif self.kind == "list":
            text = ",".join(value)
        elif self.kind == "secret":
            text = value.get_secret_value()
        else:
            text = str(value)
        return {self.env: text}

    def shown_default(self) -> str:
        """The default as the docs show it."""
        if self.kind in _MAPS or self.kind == "list" or self.default in (None, ""):
            return "-"
        if self.kind == "bool":
            return self.words[0] if self.default else self.words[1]
        if self.kind == "seconds":
            return str(int(self.default.total_seconds()))
        return str(self.default)


def _positive(raw: str, name: str, kind: type[int] | type[float]) -> Any:
    try:
        value = kind(raw)
    except ValueError:
        what = "an integer" if kind is int else "a number"
        raise ConfigError(f"{name}={raw!r} is not {what}") from None
    if value <= 0:
        raise ConfigError(f"{name}={raw!r} must be positive")
    return value


def _services(env: Mapping[str, str]) -> dict[str, str]:
    services = {
        name[len(SERVICE_PREFIX) :].lower(): url
        for name, url in env.items()
        if name.startswith(SERVICE_PREFIX) and not name.endswith(_SUFFIXES) and url
    }
    for name, url in services.items():
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"{SERVICE_PREFIX}{name.upper()}={url!r} is not an http(s) URL")
    return services


def _tokens(env: Mapping[str, str]) -> dict[str, SecretStr]:
    return {
        name[len(SERVICE_PREFIX) : -len(TOKEN_SUFFIX)].lower(): SecretStr(value)
        for name, value in env.items()
        if name.startswith(SERVICE_PREFIX) and name.endswith(TOKEN_SUFFIX) and value
    }


def _per_service(
    env: Mapping[str, str], suffix: str, kind: type[int] | type[float]
) -> list[tuple[str, Any]]:
    """``SAGALOOM_SERVICE_<NAME><suffix>`` values: (name, positive number) pairs."""
    return [
        (name[len(SERVICE_PREFIX) : -len(suffix)].lower(), _positive(raw, name, kind))
        for name, raw in env.items()
        if name.startswith(SERVICE_PREFIX) and name.endswith(suffix) and raw
    ]


_MAPS = ("services", "tokens", "budgets", "rates", "concurrency")


S = Setting
# fmt: off
WORKER_SETTINGS: tuple[Setting, ...] = (
    S("address", "TEMPORAL_ADDRESS", "text", "localhost:7233", "Temporal frontend host:port",
      "--address", True, metavar="HOST:PORT"),
    S("namespace", "TEMPORAL_NAMESPACE", "text", "default", "Temporal namespace",
      "--namespace", True),
    S("task_queue", "SAGALOOM_TASK_QUEUE", "text", DEFAULT_TASK_QUEUE, "task queue to poll",
      "--task-queue", True),
    S("services", f"{SERVICE_PREFIX}<NAME>", "services", None,
      "a participant service's base URL (flag: NAME=URL, repeatable)", "--service", True,
      metavar="NAME=URL"),
    S("service_tokens", f"{SERVICE_PREFIX}<NAME>{TOKEN_SUFFIX}", "tokens", None,
      "bearer token sent to that service as Authorization; never in history or logs"),
    S("saga_modules", "SAGALOOM_SAGA_MODULES", "list", (),
      "modules whose sagas to register, comma-separated (flag repeatable; found in the "
      "current folder as with python -m)", "--module", True, metavar="MODULE"),
    S("max_concurrent_activities", "SAGALOOM_MAX_CONCURRENT_ACTIVITIES", "count", 100,
      "activity slots", "--max-concurrent-activities"),
    S("max_concurrent_workflow_tasks", "SAGALOOM_MAX_CONCURRENT_WORKFLOW_TASKS", "count", 100,
      "workflow task slots", "--max-concurrent-workflow-tasks"),
    S("max_cached_workflows", "SAGALOOM_MAX_CACHED_WORKFLOWS", "count", 1000,
      "sticky cache size, which bounds worker memory", "--max-cached-workflows"),
    S("tuner", "SAGALOOM_TUNER", "choice", "fixed",
      "fixed slot counts, or resource: slots follow CPU and memory use", "--tuner",
      choices=("fixed", "resource")),
    S("poller", "SAGALOOM_POLLER", "choice", "simple",
      "simple (5 pollers per task type) or autoscaling (1 to 100, steered by the backlog)",
      "--poller", choices=("simple", "autoscaling")),
    S("max_activities_per_second", "SAGALOOM_MAX_ACTIVITIES_PER_SECOND", "rate", None,
      "activity rate limit of this worker", "--max-activities-per-second"),
    S("max_task_queue_activities_per_second",
      "SAGALOOM_MAX_TASK_QUEUE_ACTIVITIES_PER_SECOND", "rate", None,
      "activity rate limit of the whole task queue, all workers together",
      "--max-task-queue-activities-per-second"),
    S("processes", "SAGALOOM_PROCESSES", "count", 1,
      "worker processes saga worker runs on this host (supervised)", "--processes"),
    S("metrics_address", "SAGALOOM_METRICS_ADDRESS", "address", None,
      "host:port of the Prometheus /metrics endpoint; unset: off", "--metrics-address",
      metavar="HOST:PORT"),
    S("health_address", "SAGALOOM_HEALTH_ADDRESS", "address", None,
      "host:port of /healthz, /readyz and the reply endpoint; unset: off", "--health-address",
      metavar="HOST:PORT"),
    S("tracing", "SAGALOOM_TRACING", "bool", False,
      "OpenTelemetry tracing interceptors (needs the tracing extra)", "--tracing",
      off="no tracing"),
    S("reply_secret", "SAGALOOM_REPLY_SECRET", "secret", None,
      "secret of the reply tokens, the same on every worker; unset: each process makes its "
      "own and takes only the replies to its own commands"),
    S("encryption_keys", "SAGALOOM_ENCRYPTION_KEYS", "secret", None,
      "payload encryption keys <id>=<base64>, comma-separated, newest first (saga new-key)"),
    S("encode_failures", "SAGALOOM_ENCODE_FAILURES", "bool", False,
      "encrypt failure messages too", "--encode-failures",
      off="failure messages stay readable in history (payloads are still encrypted)"),
    S("graceful_shutdown", "SAGALOOM_GRACEFUL_SHUTDOWN_SECONDS", "seconds",
      timedelta(seconds=10), "time in-flight activities get on SIGTERM",
      "--graceful-shutdown-seconds"),
    S("nats_url", "SAGALOOM_NATS_URL", "optional", None,
      "NATS JetStream for Command steps, lifecycle events and triggers (saga dev starts one "
      "when none runs there); unset: no broker", "--nats", True, metavar="URL"),
    S("nats_namespace", "SAGALOOM_NATS_NAMESPACE", "text", DEFAULT_NAMESPACE,
      "broker namespace: first token of every subject, prefix of every stream and consumer",
      "--nats-namespace", True, metavar="NAME"),
    S("nats_max_msgs", "SAGALOOM_NATS_MAX_MSGS", "count", 100_000,
      "messages kept at most in the replies and dead-letter streams", "--nats-max-msgs"),
    S("nats_max_bytes", "SAGALOOM_NATS_MAX_BYTES", "count", 256 * 1024 * 1024,
      "bytes kept at most in each of those streams", "--nats-max-bytes"),
    S("drawings_url", "SAGALOOM_DRAWINGS_URL", "optional", None,
      "the codec server that draws runs (saga codec-server --module ...): each run's page in "
      "the Web UI links to its drawing there; unset: no link", "--drawings-url", True,
      metavar="URL"),
    S("payload_store", "SAGALOOM_PAYLOAD_STORE", "choice", "auto",
      "where payloads over the threshold go, history keeping a reference: auto is nats when "
      "SAGALOOM_NATS_URL is set, else off", "--payload-store", True,
      choices=("auto", "nats", "s3", "off")),
    S("payload_threshold", "SAGALOOM_PAYLOAD_THRESHOLD", "count", 256 * 1024,
      "payloads of this many bytes or more (encoded) are stored; smaller ones stay in history",
      "--payload-threshold"),
    S("payload_bucket", "SAGALOOM_PAYLOAD_BUCKET", "text", "sagaloom-payloads",
      "the NATS object store bucket, or the S3 bucket", "--payload-bucket", metavar="NAME"),
    S("payload_prefix", "SAGALOOM_PAYLOAD_PREFIX", "text", "",
      "S3: put before every key (keep it while runs refer to stored payloads)",
      "--payload-prefix", metavar="PREFIX"),
    S("payload_endpoint", "SAGALOOM_S3_ENDPOINT", "optional", None,
      "S3: an S3-compatible server's URL instead of AWS (credentials and region the AWS way)",
      "--s3-endpoint", metavar="URL"),
    S("max_input_bytes", "SAGALOOM_MAX_INPUT_BYTES", "count", 100_000_000,
      "largest saga input start_saga sends when a payload store is on (off: 2 MB, Temporal's "
      "limit)", "--max-input-bytes"),
    S("payload_sweep", "SAGALOOM_PAYLOAD_SWEEP_SECONDS", "seconds", timedelta(hours=1),
      "how often a worker removes stored payloads whose saga Temporal no longer knows",
      "--payload-sweep-seconds"),
    S("triggers", "SAGALOOM_TRIGGERS", "list", (),
      "SUBJECT=SagaName pairs: each message on the subject starts that saga (needs NATS)",
      "--trigger", True, metavar="SUBJECT=SAGA"),
    S("sandboxed", "SAGALOOM_SANDBOX", "bool", True,
      "run workflow code in the SDK's sandbox, which catches a clock, random number or I/O "
      "call in your step builders", "--no-sandbox", words=("on", "off"),
      off="run workflow code outside the SDK's sandbox: less CPU per saga, but "
      "non-determinism in your step builders is no longer caught"),
    S("breaker", "SAGALOOM_BREAKER", "bool", True,
      "HTTP and Command steps wait while their service is down (its breaker open) instead of "
      "spending retries and compensating", "--no-breaker", words=("on", "off"),
      off="steps never wait for a down service: they retry as their policy says, then the "
      "saga compensates"),
    S("breaker_threshold", "SAGALOOM_BREAKER_THRESHOLD", "count", 5,
      "unavailable failures (refused, reset, timed out, 502/503/504) within the window that "
      "open a service's breaker (a worker reports them while most of its calls fail)",
      "--breaker-threshold"),
    S("breaker_window", "SAGALOOM_BREAKER_WINDOW_SECONDS", "seconds", timedelta(seconds=30),
      "how far back those failures count", "--breaker-window-seconds"),
    S("breaker_probe", "SAGALOOM_BREAKER_PROBE_SECONDS", "seconds", timedelta(seconds=5),
      "how often an open breaker tests its service (one probe, not one call per saga)",
      "--breaker-probe-seconds"),
    S("breaker_release_rate", "SAGALOOM_BREAKER_RELEASE_PER_SECOND", "rate", 10.0,
      "waiting steps released per second once the service answers", "--breaker-release-rate"),
    S("outage_budget", "SAGALOOM_OUTAGE_BUDGET_SECONDS", "seconds", timedelta(hours=1),
      "how long a step waits for its service at most; past it the saga compensates",
      "--outage-budget-seconds"),
    S("outage_budgets", f"{SERVICE_PREFIX}<NAME>{BUDGET_SUFFIX}", "budgets", None,
      "one service's own outage budget, in seconds"),
    S("service_rates", f"{SERVICE_PREFIX}<NAME>{RATE_SUFFIX}", "rates", None,
      "at most this many HTTP calls a second to that service, all workers together (the "
      "server enforces it on the service's own task queue)"),
    S("service_concurrency", f"{SERVICE_PREFIX}<NAME>{CONCURRENCY_SUFFIX}", "concurrency", None,
      "at most this many HTTP calls to that service at once, per worker process"),
    S("deployment", "SAGALOOM_DEPLOYMENT", "optional", None,
      "Worker Versioning: this worker's deployment (with the build id, or neither)",
      "--deployment", metavar="NAME"),
    S("build_id", "SAGALOOM_BUILD_ID", "optional", None,
      "Worker Versioning: this worker's build id, for example the image tag", "--build-id",
      metavar="ID"),
    S("versioning", "SAGALOOM_VERSIONING", "choice", "pinned",
      "pinned (a saga finishes on its build) or auto-upgrade (moves to the current build)",
      "--versioning", choices=("pinned", "auto-upgrade")),
)
# fmt: on
"""Every :class:`~sagaloom.worker.WorkerConfig` field, in the order the docs list them."""

# fmt: off
CLI_SETTINGS: tuple[Setting, ...] = (
    S("log_level", "SAGALOOM_LOG_LEVEL", "text", "INFO", "log level of saga and its workers",
      "--log-level"),
    S("log_format", "SAGALOOM_LOG_FORMAT", "choice", "text",
      "text, or json: one object per line", "--log-format", choices=("text", "json")),
    S("ui", "SAGALOOM_UI", "optional", None,
      "Web UI base URL for links; unset: the one saga dev runs here, else :8233", "--ui"),
    S("codec_token", "SAGALOOM_CODEC_TOKEN", "secret", None,
      "bearer token of saga codec-server; unset: it makes one and prints it"),
)
# fmt: on
"""What the ``saga`` command reads besides the workers' settings (and the standard
``TEMPORAL_*`` TLS and API-key variables, which its flags set)."""


def setting(field: str) -> Setting:
    """The setting of a :class:`~sagaloom.worker.WorkerConfig` field or a CLI setting."""
    for candidate in (*WORKER_SETTINGS, *CLI_SETTINGS):
        if candidate.field == field:
            return candidate
    raise KeyError(field)


def markdown_table(settings: tuple[Setting, ...] = WORKER_SETTINGS) -> str:
    """The configuration table of the docs (docs/configuration.md), generated."""
    lines = ["| variable | flag | default | meaning |", "|---|---|---|---|"]
    for s in settings:
        flag = f"`{s.flag}`" if s.flag else "-"
        meaning = f"{s.help} ({' / '.join(s.choices)})" if s.choices else s.help
        if s.kind == "bool" and s.off:
            meaning = f"{s.words[0]}: {s.help}; {s.words[1]}: {s.off}"
        lines.append(f"| `{s.env}` | {flag} | {s.shown_default()} | {meaning} |")
    return "\n".join(lines) + "\n"
