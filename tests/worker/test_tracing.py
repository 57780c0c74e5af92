"""One trace spans the saga: client start, workflow, activities and the participants' requests."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from opentelemetry import trace
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from temporalio.client import Client
from temporalio.contrib.opentelemetry import create_tracer_provider

from sagaloom import SagaStatus
from sagaloom._ops._telemetry import tracing_plugin
from sagaloom.client import connect, outcome, start_saga
from sagaloom.worker import WorkerConfig, build_worker, load_sagas
from tests._helpers import EXAMPLES, Stack, order
from workflows.order import ORDER

pytestmark = pytest.mark.integration
EXPORTER = InMemorySpanExporter()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def traced(stack: Stack) -> AsyncIterator[tuple[Client, str]]:
    provider = create_tracer_provider()
    provider.add_span_processor(SimpleSpanProcessor(EXPORTER))
    trace.set_tracer_provider(provider)
    client = await connect(stack.address, plugins=[tracing_plugin()])
    queue = f"traced-{uuid.uuid4().hex[:6]}"
    config = WorkerConfig(task_queue=queue, max_cached_workflows=0, services=stack.services)
    async with build_worker(client, load_sagas(EXAMPLES).values(), config=config):
        yield client, queue


async def test_a_saga_is_one_trace_from_client_to_participants(
    stack: Stack, traced: tuple[Client, str], key: str
) -> None:
    client, queue = traced
    tracer = trace.get_tracer("tests")
    with tracer.start_as_current_span("checkout") as root:
        handle = await start_saga(client, ORDER, order(key), task_queue=queue)
    result = await outcome(handle)
    assert result.status is SagaStatus.COMPLETED

    trace_id = root.get_span_context().trace_id
    names = {s.name for s in EXPORTER.get_finished_spans() if s.context.trace_id == trace_id}
    assert {"StartWorkflow:OrderSaga", "RunWorkflow:OrderSaga"} <= names
    assert {"StartActivity:sagaloom.http", "RunActivity:sagaloom.http"} <= names
    # Each participant saw a traceparent of the same trace.
    for service in ("inventory", "payment", "shipping"):
        [applied] = [e for e in await stack.log(service, key) if e["op"] == "do"]
        assert applied["trace"] and applied["trace"].split("-")[1] == f"{trace_id:032x}"
