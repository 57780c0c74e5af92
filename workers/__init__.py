"""Worker processes, configuration, graceful shutdown, the ``saga`` CLI, the embedded dev server."""

from workers._client import DEFAULT_UI, Outcome, connect, outcome, start_saga, ui_link
from workers._config import DEFAULT_TASK_QUEUE, ConfigError, WorkerConfig
from workers._converter import DATA_CONVERTER, QuietFailureConverter
from workers._devserver import (
    TUNED_PRAGMAS,
    DevServer,
    DevServerError,
    DevServerOptions,
    ensure_search_attributes,
    free_port,
    port_open,
    temporal_cli,
)
from workers._logging import StepFailureFilter, configure_logging
from workers._registry import EXAMPLE_MODULES, UnknownSagaError, find_saga, load_sagas
from workers._worker import build_worker, run_worker

__all__ = [
    "DATA_CONVERTER",
    "DEFAULT_TASK_QUEUE",
    "DEFAULT_UI",
    "EXAMPLE_MODULES",
    "TUNED_PRAGMAS",
    "ConfigError",
    "DevServer",
    "DevServerError",
    "DevServerOptions",
    "Outcome",
    "QuietFailureConverter",
    "StepFailureFilter",
    "UnknownSagaError",
    "WorkerConfig",
    "build_worker",
    "configure_logging",
    "connect",
    "ensure_search_attributes",
    "find_saga",
    "free_port",
    "load_sagas",
    "outcome",
    "port_open",
    "run_worker",
    "start_saga",
    "temporal_cli",
    "ui_link",
]
