"""What the reference application's workers run, and where."""

from __future__ import annotations

import os
from dataclasses import replace

from sagaloom.worker import WorkerConfig

__all__ = [
    "ALL_SAGA_MODULES",
    "APP_ENV",
    "BROKER_SAGA_MODULES",
    "SAGA_MODULES",
    "TASK_QUEUE",
    "worker_config",
]

SAGA_MODULES = (
    "workflows.order",
    "workflows.guarded_order",
    "workflows.trip",
    "workflows.transfer",
    "workflows.itinerary",
)
"""Modules defining the example sagas whose participants answer over HTTP."""
BROKER_SAGA_MODULES = ("workflows.fulfilment",)
"""Example sagas with an event-driven participant: registered where a broker is configured."""
ALL_SAGA_MODULES = (*SAGA_MODULES, *BROKER_SAGA_MODULES)
"""Every example saga (what ``./run start``, ``./run contract`` and the other commands name)."""

APP_ENV = ("LEDGER_DB",)
"""The reference application's own variables (the ledger activities' database)."""

TASK_QUEUE = "sagaloom-examples"
"""The examples' own task queue: a worker of your project on ``sagaloom`` never sees them."""


def worker_config() -> WorkerConfig:
    """The environment's worker configuration, with the example sagas and their task queue.

    The event-driven example (``workflows.fulfilment``) joins when ``SAGALOOM_NATS_URL`` is set.
    """
    config = WorkerConfig.from_env()
    broker = BROKER_SAGA_MODULES if config.nats_url else ()
    return replace(
        config,
        saga_modules=(*SAGA_MODULES, *broker, *config.saga_modules),
        task_queue=os.environ.get("SAGALOOM_TASK_QUEUE") or TASK_QUEUE,
    )
