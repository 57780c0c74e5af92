"""The NATS payload store on its own (docs/payloads.md, "When the store fails"): a store that
is down makes an operation wait and retry, never lose data; one that stays down is a clear
error; an object gone is ``PayloadMissing`` naming the saga. A real nats-server, no Temporal.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import nats
import pytest
from nats.js import JetStreamContext
from temporalio.api.common.v1 import Payload
from temporalio.converter import (
    StorageDriverClaim,
    StorageDriverRetrieveContext,
    StorageDriverStoreContext,
    StorageDriverWorkflowInfo,
)

from sagaloom.server import NatsServer, NatsServerOptions
from sagaloom.storage import NatsPayloadDriver, PayloadMissing, PayloadStoreUnavailable

pytestmark = pytest.mark.integration


def _context(workflow_id: str) -> StorageDriverStoreContext:
    return StorageDriverStoreContext(
        target=StorageDriverWorkflowInfo(namespace="default", id=workflow_id)
    )


def _payload(size: int) -> Payload:
    return Payload(metadata={"encoding": b"binary/plain"}, data=bytes(range(256)) * (size // 256))


async def test_a_write_while_the_store_is_down_waits_and_lands_once_it_is_back(
    tmp_path: Path,
) -> None:
    options = NatsServerOptions.in_folder(tmp_path)
    server = NatsServer(options)
    driver = NatsPayloadDriver(server.url, wait=timedelta(seconds=30))
    payload = _payload(2_000_000)

    async def later() -> None:
        await asyncio.sleep(3)  # down for three seconds, then up
        await server.start()

    starting = asyncio.create_task(later())
    try:
        began = time.monotonic()
        (claim,) = await driver.store(_context("saga-1"), [payload])
        waited = time.monotonic() - began
        await starting
        (back,) = await driver.retrieve(StorageDriverRetrieveContext(), [claim])
    finally:
        await driver.aclose()
        server.stop()
    assert waited >= 2.5  # it waited for the store...
    assert back == payload  # ...and nothing was lost
    assert claim.claim_data["name"].startswith("default/saga-1/")


async def test_a_claim_is_returned_only_once_its_object_is_written_whole(tmp_path: Path) -> None:
    # payloads.md: "a history only ever holds the reference of a write that completed": the
    # driver hands the SDK a claim (what history records) only after the object is stored.
    server = NatsServer(NatsServerOptions.in_folder(tmp_path))
    await server.start()
    driver = NatsPayloadDriver(server.url, wait=timedelta(seconds=30))
    payload = _payload(3_000_000)
    nc = await nats.connect(server.url)
    try:
        (claim,) = await driver.store(_context("saga-w"), [payload])
        store = await nc.jetstream().object_store(claim.claim_data["bucket"])
        info = await store.get_info(claim.claim_data["name"])  # at once: no waiting for it
        assert info.size == len(payload.SerializeToString())
    finally:
        await nc.close()
        await driver.aclose()
        server.stop()


async def test_a_store_that_stays_down_is_a_clear_error_within_the_wait(tmp_path: Path) -> None:
    url = NatsServer(NatsServerOptions.in_folder(tmp_path)).url  # never started
    driver = NatsPayloadDriver(url, wait=timedelta(seconds=2))
    began = time.monotonic()
    with pytest.raises(PayloadStoreUnavailable, match="did not answer within 2s"):
        # A hang (nats-py's first connect retries forever) fails here rather than stalling the run.
        await asyncio.wait_for(driver.store(_context("saga-2"), [_payload(1024)]), timeout=15)
    assert time.monotonic() - began < 10


async def test_a_stored_payload_gone_is_payload_missing_naming_the_saga(tmp_path: Path) -> None:
    server = NatsServer(NatsServerOptions.in_folder(tmp_path))
    await server.start()
    driver = NatsPayloadDriver(server.url)
    try:
        (claim,) = await driver.store(_context("order-42"), [_payload(300_000)])
        (listed,) = await driver.objects()
        assert await driver.delete_unless_rewritten(listed)
        with pytest.raises(PayloadMissing, match="saga 'order-42' is gone"):
            await driver.retrieve(StorageDriverRetrieveContext(), [claim])
        forged = StorageDriverClaim(claim_data={**claim.claim_data, "bucket": "elsewhere"})
        with pytest.raises(PayloadMissing, match="SAGALOOM_PAYLOAD_BUCKET"):
            await driver.retrieve(StorageDriverRetrieveContext(), [forged])
    finally:
        await driver.aclose()
        server.stop()


async def test_a_store_that_stops_answering_mid_read_is_a_clear_error_within_the_wait(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # payloads.md: a store that stops answering in the middle of an operation (a read waiting
    # for its chunks) fails the attempt within the wait, never a hang. Forced: the server is
    # frozen (SIGSTOP) the moment the read has subscribed to the object's chunks.
    server = NatsServer(NatsServerOptions.in_folder(tmp_path))
    await server.start()
    driver = NatsPayloadDriver(server.url, wait=timedelta(seconds=2))
    payload = _payload(3_000_000)
    frozen = False
    subscribe = JetStreamContext.subscribe

    async def subscribe_then_freeze(self: JetStreamContext, *args: Any, **kwargs: Any) -> Any:
        nonlocal frozen
        sub = await subscribe(self, *args, **kwargs)
        if not frozen:
            frozen = True
            os.kill(server.pid, signal.SIGSTOP)
        return sub

    try:
        (claim,) = await driver.store(_context("saga-frozen"), [payload])
        monkeypatch.setattr(JetStreamContext, "subscribe", subscribe_then_freeze)
        began = time.monotonic()
        with pytest.raises(PayloadStoreUnavailable, match="did not answer within 2s"):
            await asyncio.wait_for(
                driver.retrieve(StorageDriverRetrieveContext(), [claim]), timeout=60
            )
        assert frozen
        assert time.monotonic() - began < 15  # two attempts of 2 s and the pauses, not a minute
        os.kill(server.pid, signal.SIGCONT)  # back: the retried read gets it whole
        (back,) = await driver.retrieve(StorageDriverRetrieveContext(), [claim])
        assert back == payload
    finally:
        if frozen:
            os.kill(server.pid, signal.SIGCONT)
        await driver.aclose()
        server.stop()
