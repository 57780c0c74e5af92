"""Adding sagaloom to an existing Temporal project: one plugin line, nothing else breaks."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from typing import Any

import pytest
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.exceptions import ApplicationError
from temporalio.worker import (
    ActivityInboundInterceptor,
    ExecuteActivityInput,
    Interceptor,
    Worker,
)
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions
from temporalio.workflow import _Definition

import sagaloom.worker._plugin as plugin_module
from sagaloom import SagaStatus
from sagaloom.client import outcome, start_saga
from sagaloom.converter import EncryptionCodec
from sagaloom.server import DevServer
from sagaloom.testing import SagaEnvironment, ScriptedParticipant
from sagaloom.worker import SagaloomPlugin
from tests._helpers import Stack, order
from tests._team import GreetWorkflow, greet
from workflows.order import ORDER, OrderSaga

pytestmark = pytest.mark.integration


class CountingInterceptor(Interceptor):
    """The team's own worker interceptor: counts the activities it sees."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        seen = self.seen

        class Inbound(ActivityInboundInterceptor):
            async def execute_activity(self, input: ExecuteActivityInput) -> Any:
                seen.append(input.fn.__name__)
                return await super().execute_activity(input)

        return Inbound(next)


async def test_one_plugin_line_adds_sagas_beside_the_teams_own_workflows(
    stack: Stack, key: str
) -> None:
    client = await Client.connect(
        stack.address,
        data_converter=pydantic_data_converter,  # what the team had
        plugins=[SagaloomPlugin(services=stack.services)],
    )
    queue = f"team-{uuid.uuid4().hex[:6]}"
    counting = CountingInterceptor()
    async with Worker(
        client,
        task_queue=queue,
        workflows=[GreetWorkflow, OrderSaga],
        activities=[greet],
        interceptors=[counting],
    ):
        # index.md: one plugin line "never touches your own workflows or activities"; a team
        # worker that lost them would leave this waiting, so it is bounded
        greeting = await asyncio.wait_for(
            client.execute_workflow(GreetWorkflow.run, "ada", id=f"greet-{key}", task_queue=queue),
            30,
        )
        handle = await start_saga(client, ORDER, order(key), task_queue=queue)
        result = await asyncio.wait_for(outcome(handle), 60)
    assert greeting == "hello ada"
    assert result.status is SagaStatus.COMPLETED
    assert await stack.record("payment", key) == "active"
    assert "greet" in counting.seen and "call" in counting.seen  # both kinds of activity


async def test_only_the_sagas_a_worker_names_run_on_it(temporal: Client, key: str) -> None:
    # sagas.md: "Only the sagas you name are registered." OrderSaga is imported here (a defined
    # saga class) but this team worker names only its own workflow: an order sent to its queue
    # is not run there; its workflow task fails "not registered" and no step is scheduled.
    plugin = SagaloomPlugin(services={"inventory": "http://127.0.0.1:9"})
    client = await Client.connect(temporal.service_client.config.target_host, plugins=[plugin])
    queue = f"team-{uuid.uuid4().hex[:6]}"
    async with Worker(client, task_queue=queue, workflows=[GreetWorkflow], activities=[greet]):
        handle = await start_saga(client, ORDER, order(key), task_queue=queue)
        try:
            async with asyncio.timeout(30):  # until it fails, or runs a step
                failed, ran = await so_far(handle)
                while not (failed or ran):
                    await asyncio.sleep(0.2)
                    failed, ran = await so_far(handle)
        finally:
            await handle.terminate("test: not registered, as it should be")
    assert not ran, f"an unnamed saga ran on the team's worker: {ran}"
    assert "not registered" in failed[0], failed


async def so_far(handle: Any) -> tuple[list[str], list[str]]:
    """The run's failed workflow tasks' messages and the activities it scheduled, so far."""
    events = (await handle.fetch_history()).events
    return [
        e.workflow_task_failed_event_attributes.failure.message
        for e in events
        if e.HasField("workflow_task_failed_event_attributes")
    ], [
        e.activity_task_scheduled_event_attributes.activity_type.name
        for e in events
        if e.HasField("activity_task_scheduled_event_attributes")
    ]


def test_the_plugin_keeps_a_codec_and_a_sandbox_the_team_set() -> None:
    codec = EncryptionCodec.from_spec(f"k1={EncryptionCodec.new_key()}")
    team = dataclasses.replace(pydantic_data_converter, payload_codec=codec)
    plugin = SagaloomPlugin(services={})
    configured = plugin.configure_client({"data_converter": team})  # type: ignore[typeddict-item]
    converter = configured["data_converter"]
    assert converter.payload_codec is codec
    assert converter.failure_converter_class.__name__ == "QuietFailureConverter"

    runner = SandboxedWorkflowRunner(
        restrictions=SandboxRestrictions.default.with_passthrough_modules("teamlib")
    )
    worker_config: Any = {"workflow_runner": runner, "client": None, "activities": [greet]}
    configured_worker = plugin.configure_worker(worker_config)
    out = configured_worker["workflow_runner"]
    assert isinstance(out, SandboxedWorkflowRunner)
    assert {"teamlib", "sagaloom"} <= set(out.restrictions.passthrough_modules)
    # the team's activity first, then the HTTP participant and its breakers' probe, then the
    # ones behind exclusive keys (ask a key's shard and release keys)
    assert [fn.__name__ for fn in configured_worker["activities"]] == [
        "greet", "call", "probe", "ask_key", "release_keys"
    ]  # fmt: skip
    assert [w.__name__ for w in configured_worker["workflows"]] == [
        "ServiceBreaker", "EndNotice", "KeyShard", "ItemsWorkflow"
    ]  # fmt: skip


async def test_a_scripted_participant_stands_in_for_the_services(
    stack: Stack, dev_server: DevServer, key: str
) -> None:
    env = SagaEnvironment(stack.client, dev_server)
    participant = ScriptedParticipant(
        {
            "inventory POST /reservations": {"id": "res-1", "order_id": key},
            "payment POST /charges": ApplicationError("declined", non_retryable=True),
        }
    )
    async with env.worker([OrderSaga], participant=participant) as worker:
        handle = await start_saga(env.client, ORDER, order(key), task_queue=worker.task_queue)
        result = await outcome(handle)
    assert result.status is SagaStatus.COMPENSATED
    assert participant.keys() == [
        "inventory POST /reservations",
        "payment POST /charges",
        "inventory POST /reservations/release",
    ]


async def test_the_key_shards_never_import_sagaloom_again_in_a_sandbox(
    temporal: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The plugin runs the key shards' worker beside the team's worker. A shard's task must not
    # re-import sagaloom inside a sandbox (a whole import for every shard it caches): the
    # shard runs outside the sandbox, and that worker's sandbox passes sagaloom through too.
    built: list[dict[str, Any]] = []

    def spy(*args: Any, **kwargs: Any) -> Worker:
        built.append(kwargs)
        return Worker(*args, **kwargs)

    monkeypatch.setattr(plugin_module, "Worker", spy)
    plugin = SagaloomPlugin(services={})
    team = Worker(temporal, task_queue=f"team-{uuid.uuid4().hex[:6]}", activities=[greet],
                  plugins=[plugin])  # fmt: skip
    ran: list[Worker] = []

    async def run(worker: Worker) -> None:
        ran.append(worker)

    await plugin.run_worker(team, run)
    assert ran == [team]
    (shards,) = [kwargs for kwargs in built if kwargs.get("workflows")]
    assert [w.__name__ for w in shards["workflows"]] == ["KeyShard"]
    assert not _Definition.must_from_class(shards["workflows"][0]).sandboxed
    runner = shards["workflow_runner"]
    assert isinstance(runner, SandboxedWorkflowRunner)
    assert "sagaloom" in runner.restrictions.passthrough_modules


def test_configuration_takes_one_path_and_a_given_config_reads_no_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """docs/configuration.md: environment -> WorkerConfig -> plugin. ``SagaloomPlugin()`` reads
    the environment (once, into a WorkerConfig); given ``config=``, it reads none of it."""
    from sagaloom.worker import WorkerConfig

    monkeypatch.setenv("SAGALOOM_NATS_URL", "nats://127.0.0.1:1")
    monkeypatch.setenv("SAGALOOM_SERVICE_PAYMENT_CALLS_PER_SECOND", "5")
    monkeypatch.setenv("SAGALOOM_SERVICE_PAYMENT", "http://127.0.0.1:9/from-env")
    from_env = SagaloomPlugin()
    assert from_env.broker is not None and set(from_env.limits) == {"payment"}
    given = SagaloomPlugin(config=WorkerConfig(services={"payment": "http://127.0.0.1:9/x"}))
    assert given.broker is None and given.limits == {}  # nothing of the environment's
    # a malformed variable stops the plugin that reads the environment, naming it, and not
    # the one given its configuration
    monkeypatch.setenv("SAGALOOM_BREAKER_THRESHOLD", "many")
    with pytest.raises(Exception, match="SAGALOOM_BREAKER_THRESHOLD"):
        SagaloomPlugin()
    SagaloomPlugin.from_config(WorkerConfig(services={"payment": "http://127.0.0.1:9/x"}))
