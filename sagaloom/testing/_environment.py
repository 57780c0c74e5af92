"""A ready test environment: the embedded dev server, a client, and workers on demand."""

from __future__ import annotations

import contextlib
import tempfile
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from temporalio.client import Client
from temporalio.worker import Interceptor, Worker

from sagaloom.client._runs import connect
from sagaloom.server._temporal import DevServer, DevServerOptions
from sagaloom.testing._scripted import ScriptedParticipant
from sagaloom.worker._plugin import SagaloomPlugin

__all__ = ["SagaEnvironment", "saga_environment"]


@dataclass
class SagaEnvironment:
    """A running dev server and a client connected to it."""

    client: Client
    """Connected with sagaloom's data converter."""
    server: DevServer
    """The embedded dev server (its Web UI at ``server.ui_url``)."""

    def worker(
        self,
        sagas: Sequence[type],
        *,
        services: Mapping[str, str] | None = None,
        participant: ScriptedParticipant | None = None,
        task_queue: str | None = None,
        activities: Sequence[Any] = (),
        interceptors: Sequence[Interceptor] = (),
        max_cached_workflows: int = 1000,
    ) -> Worker:
        """A worker for ``sagas`` (``async with env.worker([...]) as w: ... w.task_queue``).

        Args:
            sagas: Saga workflow classes (and any other workflows).
            services: Participant base URLs, for real HTTP participants.
            participant: A scripted participant instead of real ones.
            task_queue: Default: a fresh one, so tests never share workers.
            activities: More activities.
            interceptors: Worker interceptors (for example a ``FaultInjector``).
            max_cached_workflows: Sticky cache size (0 replays every task: finds
                non-determinism).
        """
        plugin = SagaloomPlugin(services=services or {}, http=participant is None)
        extra = [participant.call] if participant is not None else []
        return Worker(
            self.client,
            task_queue=task_queue or f"test-{uuid.uuid4().hex[:8]}",
            workflows=list(sagas),
            activities=[*extra, *activities],
            interceptors=interceptors,
            plugins=[plugin],
            max_cached_workflows=max_cached_workflows,
        )


@contextlib.asynccontextmanager
async def saga_environment(data_dir: Path | None = None) -> AsyncIterator[SagaEnvironment]:
    """Start the embedded dev server on free loopback ports; stop it on exit.

    Args:
        data_dir: Where its SQLite file and log go; default a temporary folder.
    """
    with contextlib.ExitStack() as stack:
        if data_dir is None:
            data_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="sagaloom-")))
        server = DevServer(DevServerOptions.in_folder(data_dir))
        await server.start()
        stack.callback(server.stop)
        yield SagaEnvironment(await connect(server.address), server)
