"""Large payloads (docs/payloads.md): a saga input, a broker command and its reply far over
Temporal's 2 MB and the broker's 1 MB go to a store, and history keeps a reference.

Real stack: the dev server, a NATS JetStream server (the embedded default store), a real
``saga worker`` process, an archive participant built on the toolkit (over NATS); S3 from moto's
server mode on loopback. What a user checks: the saga ends as it should, the participant applied
each command once with the exact bytes, history stays small, the store holds the payloads (and,
with encryption on, holds no plaintext), and what no history refers to any more is swept.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import os
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import nats
import pytest
import pytest_asyncio
from google.protobuf import json_format
from pydantic import BaseModel
from sqlalchemy import Column, Integer, MetaData, String, Table, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.api.common.v1 import Payloads, WorkflowExecution
from temporalio.api.workflowservice.v1 import DeleteWorkflowExecutionRequest
from temporalio.client import Client, WorkflowHandle
from temporalio.worker import Replayer, Worker

from sagaloom import SagaInputError, SagaStatus
from sagaloom._ops._codec_server import CodecServer
from sagaloom._runtime._items import ItemsWorkflow
from sagaloom.client import connect, outcome, start_saga
from sagaloom.converter import EncryptionCodec
from sagaloom.server import NatsServer, NatsServerOptions, free_port
from sagaloom.service import Answer, Refused, SagaService, sqlite_engine
from sagaloom.storage import DEFAULT_BUCKET, PayloadStore, PayloadSweeper, resolve_references
from sagaloom.worker import SagaloomPlugin
from tests._fanout_sagas import FAN, WIDE, FanSaga, WideFanSaga
from tests._helpers import Stack, wait_for_reply_consumer
from tests._payload_sagas import DOCUMENTS, DocumentSaga
from tests._s3 import CREDENTIALS, s3_server
from tests._scripted import CALLS, scripted

pytestmark = pytest.mark.integration

MB = 1_000_000

metadata = MetaData()
filed = Table(
    "filed",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("doc_id", String(64), nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("bytes", Integer, nullable=False),
    Column("status", String(16), nullable=False),
)


class FileBody(BaseModel):
    doc_id: str
    body: str
    echo: bool = False


class DocRef(BaseModel):
    doc_id: str


def archive(path: Path) -> SagaService:
    """The archive: files a document (its digest and size), unfiles it, approves it."""
    service = SagaService(sqlite_engine(path), metadata=metadata)

    @service.command("archive.file")
    async def file(body: FileBody, tx: AsyncSession) -> dict[str, Any]:
        digest = hashlib.sha256(body.body.encode()).hexdigest()
        size = len(body.body.encode())
        await tx.execute(
            insert(filed).values(doc_id=body.doc_id, sha256=digest, bytes=size, status="filed")
        )
        return {"sha256": digest, "bytes": size, "copy": body.body if body.echo else ""}

    @service.command("archive.unfile", undo=True)
    async def unfile(body: DocRef, tx: AsyncSession, done: Answer) -> dict[str, str]:
        await tx.execute(update(filed).where(filed.c.doc_id == body.doc_id).values(status="gone"))
        return {"unfiled": body.doc_id}

    @service.command("archive.approve")
    async def approve(body: DocRef, tx: AsyncSession) -> dict[str, bool]:
        if "reject" in body.doc_id:
            raise Refused("not approved")
        return {"approved": True}

    return service


async def rows(service: SagaService, doc_id: str) -> list[tuple[str, int, str]]:
    async with service.engine.connect() as connection:
        found = await connection.execute(
            select(filed.c.sha256, filed.c.bytes, filed.c.status).where(filed.c.doc_id == doc_id)
        )
        return [(r.sha256, r.bytes, r.status) for r in found]


def document(size: int, marker: str = "") -> str:
    """``size`` characters of text that does not compress to nothing, starting with ``marker``."""
    seed = hashlib.sha256(uuid.uuid4().bytes).hexdigest()
    body = marker + (seed * (size // len(seed) + 1))
    return body[:size]


async def history_bytes(handle: WorkflowHandle[Any, Any]) -> int:
    history = await handle.fetch_history()
    return sum(event.ByteSize() for event in history.events)


async def stored_names(url: str, bucket: str = DEFAULT_BUCKET) -> list[str]:
    nc = await nats.connect(url)
    try:
        store = await nc.jetstream().object_store(bucket)
        with contextlib.suppress(Exception):
            return [info.name for info in await store.list(ignore_deletes=True)]
        return []
    finally:
        await nc.close()


async def raw_objects(url: str, bucket: str = DEFAULT_BUCKET) -> dict[str, bytes]:
    nc = await nats.connect(url)
    try:
        store = await nc.jetstream().object_store(bucket)
        found = {}
        for info in await store.list(ignore_deletes=True):
            found[info.name] = (await store.get(info.name)).data or b""
        return found
    finally:
        await nc.close()


@contextlib.asynccontextmanager
async def consuming(service: SagaService, url: str, durable: str) -> AsyncIterator[None]:
    stop = asyncio.Event()
    task = asyncio.create_task(service.consume(url, durable=durable, stop=stop))
    try:
        yield
    finally:
        stop.set()
        await task


def worker(stack: Stack, nats_server: NatsServer, **env: str) -> tuple[str, Any]:
    name = f"payloads-{os.urandom(3).hex()}"
    process = stack.start_worker(
        name,
        "--module",
        "tests._payload_sagas",
        "--task-queue",
        name,
        "--nats",
        nats_server.url,
        env=env,
    )
    return name, process


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def nats_queue(stack: Stack, nats_server: NatsServer) -> AsyncIterator[str]:
    name, process = worker(stack, nats_server)  # the default: SAGALOOM_PAYLOAD_STORE=auto
    await wait_for_reply_consumer(nats_server.url, process)
    yield name
    process.terminate()
    process.wait(20)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def stored_client(stack: Stack, nats_server: NatsServer) -> Client:
    return await connect(stack.address, payloads=PayloadStore("nats", nats_server.url))


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> SagaService:
    return archive(tmp_path_factory.mktemp("archive") / "archive.sqlite3")


async def test_a_5_mb_document_files_once_and_its_history_holds_references(
    stored_client: Client, nats_server: NatsServer, nats_queue: str, service: SagaService
) -> None:
    doc_id = f"doc-{uuid.uuid4().hex[:8]}"
    body = document(5 * MB)
    async with consuming(service, nats_server.url, "archive-nats"):
        handle = await start_saga(
            stored_client,
            DOCUMENTS,
            {"doc_id": doc_id, "body": body, "echo": True},
            task_queue=nats_queue,
        )
        result = await asyncio.wait_for(outcome(handle), 120)

    assert result.status is SagaStatus.COMPLETED, result
    digest = hashlib.sha256(body.encode()).hexdigest()
    # the participant got the exact 5 MB body (a command over the broker's 1 MB), once
    assert await rows(service, doc_id) == [(digest, 5 * MB, "filed")]
    assert result.report is not None
    output = result.report.outputs["file"]  # the 5 MB reply came back whole
    assert output["sha256"] == digest and output["copy"] == body
    # history holds references: far under the 15 MB the input, command and reply weigh
    assert await history_bytes(handle) < 200_000
    names = await stored_names(nats_server.url)
    assert any(n.startswith(f"default/{handle.id}/") for n in names), names
    # its history, references and all, replays on today's code with the plugin's store
    replayer = Replayer(
        workflows=[DocumentSaga],
        plugins=[SagaloomPlugin(payloads=PayloadStore("nats", nats_server.url))],
    )
    await replayer.replay_workflow(await handle.fetch_history())


async def test_a_refused_step_unfiles_the_large_document_once(
    stored_client: Client, nats_server: NatsServer, nats_queue: str, service: SagaService
) -> None:
    doc_id = f"reject-{uuid.uuid4().hex[:8]}"
    body = document(3 * MB)
    async with consuming(service, nats_server.url, "archive-nats"):
        handle = await start_saga(
            stored_client, DOCUMENTS, {"doc_id": doc_id, "body": body}, task_queue=nats_queue
        )
        result = await asyncio.wait_for(outcome(handle), 120)

    assert result.status is SagaStatus.COMPENSATED
    digest = hashlib.sha256(body.encode()).hexdigest()
    assert await rows(service, doc_id) == [(digest, 3 * MB, "gone")]


async def test_without_a_store_an_input_over_2_mb_is_refused_before_the_start(
    stack: Stack,
) -> None:
    plain = await connect(stack.address, payloads=PayloadStore("off"))
    with pytest.raises(SagaInputError, match=r"2 MB"):
        await start_saga(plain, DOCUMENTS, {"doc_id": "too-big", "body": document(3 * MB)})


async def test_with_a_store_an_input_over_the_set_limit_is_refused_naming_it(
    stored_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SAGALOOM_MAX_INPUT_BYTES", str(4 * MB))
    with pytest.raises(SagaInputError, match=r"SAGALOOM_MAX_INPUT_BYTES"):
        await start_saga(stored_client, DOCUMENTS, {"doc_id": "d", "body": document(5 * MB)})


async def test_a_stored_payload_is_encrypted_when_the_codec_is_on(
    stack: Stack, nats_server: NatsServer, tmp_path: Path
) -> None:
    keys = f"k1={EncryptionCodec.new_key()}"
    name, process = worker(stack, nats_server, SAGALOOM_ENCRYPTION_KEYS=keys)
    service = archive(tmp_path / "archive.sqlite3")
    try:
        await wait_for_reply_consumer(nats_server.url, process)
        client = await connect(
            stack.address,
            codec=EncryptionCodec.from_spec(keys),
            payloads=PayloadStore("nats", nats_server.url),
        )
        doc_id = f"secret-{uuid.uuid4().hex[:8]}"
        marker = "TOP-SECRET-" + uuid.uuid4().hex
        body = document(3 * MB, marker)
        async with consuming(service, nats_server.url, f"archive-{name}"):
            handle = await start_saga(
                client, DOCUMENTS, {"doc_id": doc_id, "body": body}, task_queue=name
            )
            result = await asyncio.wait_for(outcome(handle), 120)
    finally:
        process.terminate()
        process.wait(20)

    assert result.status is SagaStatus.COMPLETED
    objects = {
        n: data
        for n, data in (await raw_objects(nats_server.url)).items()
        if n.startswith(f"default/{handle.id}/")
    }
    assert objects, "nothing of the saga was stored"
    assert all(marker.encode() not in data for data in objects.values())
    assert all(len(data) > 3 * MB for data in objects.values())  # the input, whole, encrypted

    # An operator's Web UI sees it through the codec server (bearer token), decrypted; a
    # payload over the inline limit is a note saying how to read it.
    history = await handle.fetch_history()
    started = history.events[0].workflow_execution_started_event_attributes.input
    assert started.payloads[0].external_payloads, "the input is not a reference in history"
    body_json = json_format.MessageToJson(started)
    storage = PayloadStore("nats", nats_server.url).external_storage()
    assert storage is not None
    for inline, expect in ((4 * MB, marker), (MB, "saga show")):
        server = CodecServer(
            EncryptionCodec.from_spec(keys),
            "127.0.0.1",
            free_port(),
            "http://localhost:8233",
            token="op-token",
            resolve=functools.partial(resolve_references, storage, inline=inline),
        )
        await server.start()
        try:
            async with httpx.AsyncClient() as http:
                denied = await http.post(f"{server.url}/decode", content=body_json)
                shown = await http.post(
                    f"{server.url}/decode",
                    content=body_json,
                    headers={"Authorization": "Bearer op-token"},
                )
        finally:
            await server.stop()
        assert denied.status_code == 401
        assert shown.status_code == 200, shown.text
        (payload,) = json_format.Parse(shown.text, Payloads()).payloads
        assert expect in payload.data.decode()


async def test_the_sweeper_removes_what_a_deleted_run_stored_and_keeps_a_live_ones(
    stored_client: Client, nats_server: NatsServer, nats_queue: str, service: SagaService
) -> None:
    gone_id, kept_id = (f"sweep-{uuid.uuid4().hex[:8]}" for _ in range(2))
    async with consuming(service, nats_server.url, "archive-nats"):
        handles = [
            await start_saga(
                stored_client,
                DOCUMENTS,
                {"doc_id": d, "body": document(MB // 2)},
                task_queue=nats_queue,
            )
            for d in (gone_id, kept_id)
        ]
        for handle in handles:
            assert (await asyncio.wait_for(outcome(handle), 120)).status is SagaStatus.COMPLETED
    gone, kept = handles
    await stored_client.workflow_service.delete_workflow_execution(
        DeleteWorkflowExecutionRequest(
            namespace="default", workflow_execution=WorkflowExecution(workflow_id=gone.id)
        )
    )
    store = PayloadStore("nats", nats_server.url)
    sweeper = PayloadSweeper([store.sweepable()], stored_client, grace=timedelta(0))
    async with asyncio.timeout(60):
        while any(n.startswith(f"default/{gone.id}/") for n in await stored_names(nats_server.url)):
            await sweeper.sweep()  # (the deletion is asynchronous on the server)
            await asyncio.sleep(0.5)
    names = await stored_names(nats_server.url)
    assert any(n.startswith(f"default/{kept.id}/") for n in names)


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with s3_server(tmp_path_factory.mktemp("s3")) as endpoint:
        yield endpoint


@pytest.fixture(scope="module")
def s3_nats(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    """A NATS of the S3 deployment's own: workers that share a broker share one store.

    (payloads.md: the same store on every client and worker. The module's NATS has workers
    that store in NATS; one of them taking this saga's 3 MB reply stored it where the S3
    worker cannot read it, and the saga waited until the test timed out.)
    """
    server = NatsServer(NatsServerOptions.in_folder(tmp_path_factory.mktemp("s3-nats")))
    asyncio.run(server.start())
    yield server
    server.stop()


async def test_on_s3_a_large_document_files_once_and_the_bucket_holds_it(
    stack: Stack, s3_nats: NatsServer, s3: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    await file_on_s3(3 * MB, stack, s3_nats, s3, tmp_path, monkeypatch, echo=True)


@pytest.mark.slow
@pytest.mark.long  # scale: ./run test --long
async def test_on_s3_a_50_mb_document_files_once(
    stack: Stack, s3_nats: NatsServer, s3: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    await file_on_s3(50 * MB, stack, s3_nats, s3, tmp_path, monkeypatch, echo=False)


async def s3_bucket(s3: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A new bucket on the moto server; the credentials set for this process."""
    import aioboto3

    for k, v in CREDENTIALS.items():
        monkeypatch.setenv(k, v)
    bucket = f"payloads-{uuid.uuid4().hex[:8]}"
    async with aioboto3.Session().client("s3", endpoint_url=s3) as admin:
        await admin.create_bucket(Bucket=bucket)
    return bucket


async def s3_listing(s3: str, bucket: str) -> list[dict[str, Any]]:
    import aioboto3

    async with aioboto3.Session().client("s3", endpoint_url=s3) as admin:
        paginator = admin.get_paginator("list_objects_v2")
        return [item async for page in paginator.paginate(Bucket=bucket)
                for item in page.get("Contents", [])]  # fmt: skip


async def file_on_s3(
    size: int,
    stack: Stack,
    s3_nats: NatsServer,
    s3: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    *,
    echo: bool,
) -> None:
    """A document of ``size`` through a broker worker whose store is S3: filed once, stored."""
    bucket = await s3_bucket(s3, monkeypatch)
    env = {
        **CREDENTIALS,
        "SAGALOOM_PAYLOAD_STORE": "s3",
        "SAGALOOM_PAYLOAD_BUCKET": bucket,
        "SAGALOOM_S3_ENDPOINT": s3,
    }
    name, process = worker(stack, s3_nats, **env)
    service = archive(tmp_path / "archive.sqlite3")
    try:
        await wait_for_reply_consumer(s3_nats.url, process)
        client = await connect(
            stack.address, payloads=PayloadStore("s3", bucket=bucket, endpoint=s3)
        )
        doc_id = f"s3-{uuid.uuid4().hex[:8]}"
        body = document(size)
        async with consuming(service, s3_nats.url, f"archive-{name}"):
            handle = await start_saga(
                client, DOCUMENTS, {"doc_id": doc_id, "body": body, "echo": echo}, task_queue=name
            )
            result = await asyncio.wait_for(outcome(handle), 600)
    finally:
        process.terminate()
        process.wait(20)

    assert result.status is SagaStatus.COMPLETED, result
    digest = hashlib.sha256(body.encode()).hexdigest()
    assert await rows(service, doc_id) == [(digest, size, "filed")]
    if echo:
        assert result.report is not None and result.report.outputs["file"]["copy"] == body
    assert await history_bytes(handle) < 200_000
    listed = await s3_listing(s3, bucket)
    assert any(handle.id in item["Key"] for item in listed), listed
    assert sum(item["Size"] for item in listed) > size


@pytest.mark.slow
@pytest.mark.long  # scale: ./run test --long
async def test_on_s3_ten_thousand_items_of_10_kb_each_complete_and_history_stays_small(
    stack: Stack, s3: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    bucket = await s3_bucket(s3, monkeypatch)
    store = PayloadStore("s3", bucket=bucket, endpoint=s3)
    client = await connect(stack.address, payloads=store)
    queue = f"payload-fan-s3-{os.urandom(3).hex()}"
    p = fan_plan(10_000, "10kb")  # 100 MB of results
    async with Worker(
        client,
        task_queue=queue,
        workflows=[WideFanSaga, ItemsWorkflow],
        activities=[scripted],
        max_concurrent_activities=64,
    ):
        handle = await start_saga(client, WIDE, p, task_queue=queue)
        result = await asyncio.wait_for(outcome(handle), 1200)

    assert result.status is SagaStatus.COMPLETED, result.report
    assert booked(p) == Counter({f"i{n}": 1 for n in range(10_000)})
    assert await history_bytes(handle) < 5_000_000
    assert sum(item["Size"] for item in await s3_listing(s3, bucket)) > 100 * MB


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def fan_queue(stored_client: Client) -> AsyncIterator[str]:
    """An in-process worker on the stored client, the scripted participant answering."""
    queue = f"payload-fan-{os.urandom(3).hex()}"
    async with Worker(
        stored_client,
        task_queue=queue,
        workflows=[FanSaga, WideFanSaga, ItemsWorkflow],
        activities=[scripted],
        max_concurrent_activities=64,
    ):
        yield queue


def fan_plan(count: int, do: str) -> dict[str, Any]:
    run = uuid.uuid4().hex[:8]
    return {"run": run, "items": [{"id": f"i{n}", "do": do} for n in range(count)]}


def booked(p: dict[str, Any]) -> Counter[str]:
    return Counter(
        path.split("/")[2]
        for path, _ in CALLS[p["run"]]
        if path.startswith("/book/") and not path.endswith("/undo")
    )


async def test_a_fan_out_whose_outputs_pass_1_mb_completes_when_payloads_are_stored(
    stored_client: Client, fan_queue: str
) -> None:
    p = fan_plan(40, "big")  # 300 kB each: 12 MB of outputs (without a store: OutputTooLarge)
    handle = await start_saga(stored_client, FAN, p, task_queue=fan_queue)
    result = await asyncio.wait_for(outcome(handle), 180)

    assert result.status is SagaStatus.COMPLETED, result.report
    assert booked(p) == Counter({f"i{n}": 1 for n in range(40)})
    assert await history_bytes(handle) < 1_000_000


@pytest.mark.slow
@pytest.mark.long  # scale: ./run test --long
async def test_ten_thousand_items_of_10_kb_each_complete_and_history_stays_small(
    stored_client: Client, fan_queue: str
) -> None:
    p = fan_plan(10_000, "10kb")  # 100 MB of results
    handle = await start_saga(stored_client, WIDE, p, task_queue=fan_queue)
    result = await asyncio.wait_for(outcome(handle), 1200)

    assert result.status is SagaStatus.COMPLETED, result.report
    assert booked(p) == Counter({f"i{n}": 1 for n in range(10_000)})
    assert await history_bytes(handle) < 5_000_000


@pytest.mark.slow
@pytest.mark.long  # scale: ./run test --long
async def test_a_50_mb_document_files_once(
    stored_client: Client, nats_server: NatsServer, nats_queue: str, service: SagaService
) -> None:
    doc_id = f"doc50-{uuid.uuid4().hex[:8]}"
    body = document(50 * MB)
    async with consuming(service, nats_server.url, "archive-nats"):
        handle = await start_saga(
            stored_client, DOCUMENTS, {"doc_id": doc_id, "body": body}, task_queue=nats_queue
        )
        result = await asyncio.wait_for(outcome(handle), 600)

    assert result.status is SagaStatus.COMPLETED, result
    digest = hashlib.sha256(body.encode()).hexdigest()
    assert await rows(service, doc_id) == [(digest, 50 * MB, "filed")]
    assert await history_bytes(handle) < 200_000
