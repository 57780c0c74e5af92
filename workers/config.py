"""What the reference application's workers run, and where."""

from __future__ import annotations

import os
from dataclasses import replace

from sagaloom.worker import WorkerConfig

__all__ = ["APP_ENV", "SAGA_MODULES", "TASK_QUEUE", "worker_config"]

SAGA_MODULES = ("workflows.order", "workflows.trip", "workflows.transfer")
"""Modules defining the example sagas."""

APP_ENV = ("LEDGER_DB",)
"""The reference application's own variables (the ledger activities' database)."""

TASK_QUEUE = "sagaloom-examples"
"""The examples' own task queue: a worker of your project on ``sagaloom`` never sees them."""


def worker_config() -> WorkerConfig:
    """The environment's worker configuration, with the example sagas and their task queue."""
    config = WorkerConfig.from_env()
    return replace(
        config,
        saga_modules=(*SAGA_MODULES, *config.saga_modules),
        task_queue=os.environ.get("SAGALOOM_TASK_QUEUE") or TASK_QUEUE,
    )
