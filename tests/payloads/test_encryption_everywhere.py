"""One rule for encryption and connection settings, whatever the entry point (docs/security.md).

``SAGALOOM_ENCRYPTION_KEYS`` applies on workers and clients: a saga started the README's way —
``SagaloomPlugin()`` on a plain ``Client.connect`` and the SDK's ``Worker`` — with keys set
leaves no plaintext in history; a process without keys that meets an encrypted payload says
which setting is missing; a process with keys that meets plaintext warns once.
``sagaloom.client.connect()`` reads ``TEMPORAL_ADDRESS`` and ``TEMPORAL_NAMESPACE``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import uuid

import pytest
from temporalio.client import Client, WorkflowFailureError
from temporalio.worker import Worker

from sagaloom import SagaStatus
from sagaloom.client import connect, outcome, start_saga
from sagaloom.converter import EncryptedWithoutKeys, EncryptionCodec
from sagaloom.worker import SagaloomPlugin
from tests._helpers import Stack, order
from workflows.order import ORDER, OrderSaga

pytestmark = pytest.mark.integration
KEYS = f"k1={EncryptionCodec.new_key()}"


@pytest.fixture
def shop_env(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    """The README's environment: the server and the participants, by variable."""
    for name in [n for n in os.environ if n.startswith("SAGALOOM_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("TEMPORAL_ADDRESS", stack.address)
    for service in ("inventory", "payment", "shipping"):
        monkeypatch.setenv(f"SAGALOOM_SERVICE_{service.upper()}", stack.services[service])


async def test_the_readme_way_with_keys_set_leaves_no_plaintext_in_history(
    stack: Stack, shop_env: None, monkeypatch: pytest.MonkeyPatch, key: str,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    caplog.set_level(logging.WARNING, logger="sagaloom.codec")
    monkeypatch.setenv("SAGALOOM_ENCRYPTION_KEYS", KEYS)
    monkeypatch.setenv("SAGALOOM_ENCODE_FAILURES", "true")
    client = await Client.connect(stack.address, plugins=[SagaloomPlugin()])
    queue, marker = f"enc-{key}", f"Ada-{uuid.uuid4().hex}"
    async with Worker(client, task_queue=queue, workflows=[OrderSaga]):
        ok = await start_saga(client, ORDER, order(key, customer=marker), task_queue=queue)
        aq = await start_saga(
            client, ORDER, order(f"{key}-aq", customer=marker, country="AQ"), task_queue=queue
        )
        assert (await outcome(ok)).status is SagaStatus.COMPLETED
        assert (await outcome(aq)).status is SagaStatus.COMPENSATED
    for handle in (ok, aq):
        raw = (await stack.client.get_workflow_handle(handle.id).fetch_history()).to_json()
        assert marker not in raw  # input, requests, outputs: encrypted
        assert "cannot ship" not in raw  # failure messages too (SAGALOOM_ENCODE_FAILURES)
        assert "binary/encrypted" in raw or "YmluYXJ5L2VuY3J5cHRlZA" in raw
    # connect() reads the same keys: it reads what the plugin wrote
    assert (await outcome((await connect()).get_workflow_handle(ok.id))).report is not None
    assert "arrived unencrypted" not in caplog.text  # every party encrypts: no false alarm


async def test_a_worker_without_keys_names_the_missing_setting(
    stack: Stack, shop_env: None, monkeypatch: pytest.MonkeyPatch, key: str
) -> None:
    keyless = await Client.connect(stack.address, plugins=[SagaloomPlugin()])
    monkeypatch.setenv("SAGALOOM_ENCRYPTION_KEYS", KEYS)
    keyed = await connect()
    queue = f"keyless-{key}"
    async with Worker(keyless, task_queue=queue, workflows=[OrderSaga]):
        handle = await start_saga(keyed, ORDER, order(key), task_queue=queue)
        said = ""
        async with asyncio.timeout(30):
            while "SAGALOOM_ENCRYPTION_KEYS" not in said:
                await asyncio.sleep(0.2)
                history = await handle.fetch_history()
                said = " ".join(
                    f"{failure.message} {failure.cause.message}"
                    for e in history.events
                    if e.HasField("workflow_task_failed_event_attributes")
                    for failure in [e.workflow_task_failed_event_attributes.failure]
                )
    assert "reached a process with no encryption keys" in said
    await handle.terminate("test over")
    with pytest.raises(WorkflowFailureError):
        await handle.result()


async def test_a_process_with_keys_warns_once_when_plaintext_arrives(
    stack: Stack, shop_env: None, monkeypatch: pytest.MonkeyPatch, key: str,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    plain = await Client.connect(stack.address, plugins=[SagaloomPlugin()])
    monkeypatch.setenv("SAGALOOM_ENCRYPTION_KEYS", KEYS)
    keyed = await Client.connect(stack.address, plugins=[SagaloomPlugin()])
    queue = f"plain-{key}"
    caplog.set_level(logging.WARNING, logger="sagaloom.codec")
    async with Worker(keyed, task_queue=queue, workflows=[OrderSaga]):
        handles = [
            await start_saga(plain, ORDER, order(f"{key}-{n}"), task_queue=queue) for n in (1, 2)
        ]
        for handle in handles:  # (its result is encrypted: the plain client cannot read it)
            with pytest.raises(EncryptedWithoutKeys):
                await handle.result()
            ended = await outcome(keyed.get_workflow_handle(handle.id))
            assert ended.status is SagaStatus.COMPLETED
    warned = [r for r in caplog.records if "arrived unencrypted" in r.getMessage()]
    assert len(warned) == 1


async def test_connect_reads_the_address_and_namespace_variables(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEMPORAL_ADDRESS", stack.address)
    monkeypatch.setenv("TEMPORAL_NAMESPACE", "default")
    client = await connect()
    assert client.namespace == "default"
    assert await client.count_workflows("WorkflowType = 'no-such'") is not None
    monkeypatch.setenv("TEMPORAL_NAMESPACE", "elsewhere")
    assert (await connect()).namespace == "elsewhere"
    monkeypatch.setenv("TEMPORAL_ADDRESS", "127.0.0.1:1")  # nothing listens there
    with pytest.raises(RuntimeError):
        await connect()
