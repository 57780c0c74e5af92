"""Encryption with key rotation, the UI codec endpoint, and secrets kept out of history and logs."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio
from cryptography.exceptions import InvalidTag
from pydantic import SecretStr
from temporalio.api.common.v1 import Payload
from temporalio.client import Client

from sagaloom import SagaInputError, SagaStatus
from sagaloom._ops._codec_server import IDLE_TIMEOUT, CodecServer, CodecServerError
from sagaloom.client import connect, outcome, start_saga
from sagaloom.converter import EncryptionCodec, EncryptionKeyError
from sagaloom.participants import HttpParticipant
from sagaloom.server import free_port
from sagaloom.worker import WorkerConfig, build_worker, load_sagas
from tests._helpers import EXAMPLES, Stack, count_workflows, order
from workflows.order import ORDER

KEY1, KEY2 = EncryptionCodec.new_key(), EncryptionCodec.new_key()
TOKEN = "tok-" + uuid.uuid4().hex


def payload(text: str) -> Payload:
    return Payload(metadata={"encoding": b"json/plain"}, data=json.dumps(text).encode())


async def test_encryption_round_trips_with_key_rotation() -> None:
    old = EncryptionCodec.from_spec(f"k1={KEY1}")
    rotated = EncryptionCodec.from_spec(f"k2={KEY2},k1={KEY1}")
    only_new = EncryptionCodec.from_spec(f"k2={KEY2}")

    [sealed_old] = await old.encode([payload("card 4242")])
    assert b"4242" not in sealed_old.SerializeToString()
    assert sealed_old.metadata["encryption-key-id"] == b"k1"
    assert await rotated.decode([sealed_old]) == [payload("card 4242")]  # old keys decrypt

    [sealed_new] = await rotated.encode([payload("card 4242")])
    assert sealed_new.metadata["encryption-key-id"] == b"k2"  # the new key encrypts
    assert await only_new.decode([sealed_new]) == [payload("card 4242")]
    with pytest.raises(EncryptionKeyError, match="unknown key 'k1'"):
        await only_new.decode([sealed_old])
    flipped = bytes([sealed_new.data[-1] ^ 0x01])  # (writing a fixed byte fails 1 time in 256)
    tampered = Payload(metadata=sealed_new.metadata, data=sealed_new.data[:-1] + flipped)
    with pytest.raises(InvalidTag):
        await rotated.decode([tampered])


async def test_each_encryption_draws_a_fresh_nonce() -> None:
    """A reused AES-GCM nonce exposes plaintexts and allows forgeries: never twice the same."""
    codec = EncryptionCodec.from_spec(f"k1={KEY1}")
    sealed = [(await codec.encode([payload("same")]))[0] for _ in range(20)]
    nonces = {s.data[:12] for s in sealed}
    assert len(nonces) == 20 and len({s.data for s in sealed}) == 20
    for one in sealed:
        assert await codec.decode([one]) == [payload("same")]


def test_bad_key_specs_are_named() -> None:
    with pytest.raises(EncryptionKeyError, match="not base64"):
        EncryptionCodec.from_spec("k1=***")
    with pytest.raises(EncryptionKeyError, match="16, 24 or 32 bytes"):
        EncryptionCodec.from_spec(f"k1={base64.b64encode(b'short').decode()}")
    with pytest.raises(EncryptionKeyError, match="duplicate"):
        EncryptionCodec.from_spec(f"k1={KEY1},k1={KEY2}")


def sealed_body(sealed: Any) -> dict[str, Any]:
    return {
        "payloads": [
            {
                "metadata": {k: base64.b64encode(v).decode() for k, v in sealed.metadata.items()},
                "data": base64.b64encode(sealed.data).decode(),
            }
        ]
    }


async def test_the_ui_codec_endpoint_decodes_with_cors() -> None:
    codec = EncryptionCodec.from_spec(f"k1={KEY1}")
    port = free_port()
    server = CodecServer(codec, "127.0.0.1", port, "http://localhost:8233", token="s3cret")
    await server.start()
    try:
        [sealed] = await codec.encode([payload("hello")])
        body = sealed_body(sealed)
        async with httpx.AsyncClient() as http:
            url = f"http://127.0.0.1:{port}/decode"
            anonymous = await http.post(url, json=body)
            wrong = await http.post(url, json=body, headers={"Authorization": "Bearer nope"})
            response = await http.post(url, json=body, headers={"Authorization": "Bearer s3cret"})
            # /encode takes the same token (before: tested on /decode only)
            encode = f"http://127.0.0.1:{port}/encode"
            plain = {"payloads": [{"metadata": {}, "data": base64.b64encode(b'"x"').decode()}]}
            unsealed = await http.post(encode, json=plain)
            sealed_ok = await http.post(
                encode, json=plain, headers={"Authorization": "Bearer s3cret"}
            )
        assert anonymous.status_code == 401 and wrong.status_code == 401
        assert unsealed.status_code == 401 and sealed_ok.status_code == 200
        # A body announced over the limit is refused before it is read.
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            b"POST /decode HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer s3cret\r\n"
            b"Content-Length: 999999999\r\n\r\n{"
        )
        await writer.drain()
        assert (await reader.readline()).split()[1] == b"413"
        writer.close()
        # A token that is not UTF-8 is a wrong token (401), never an error
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            b"POST /decode HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \xff\xfe\xed\r\n"
            b"Content-Length: 2\r\n\r\n{}"
        )
        await writer.drain()
        assert (await reader.readline()).split()[1] == b"401"
        writer.close()
        assert response.status_code == 200
        assert response.headers["Access-Control-Allow-Origin"] == "http://localhost:8233"
        [decoded] = response.json()["payloads"]
        assert base64.b64decode(decoded["data"]) == b'"hello"'
    finally:
        await server.stop()


async def test_the_codec_server_drops_half_sent_requests_and_checks_host_without_auth() -> None:
    """Before: 200 half-sent connections stayed open after 45 s (202 threads); with --no-auth
    any Host was served, so a web page could reach it through DNS rebinding."""
    codec = EncryptionCodec.from_spec(f"k1={KEY1}")
    port = free_port()
    server = CodecServer(codec, "127.0.0.1", port, "http://localhost:8233", token=None)
    await server.start()
    try:
        half = []
        for _ in range(50):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"POST /decode HTTP/1.1\r\nHost: localhost\r\n")  # never finished
            await writer.drain()
            half.append((reader, writer))
        await asyncio.sleep(IDLE_TIMEOUT + 2)
        closed = [await asyncio.wait_for(r.read(), 5) for r, _ in half]  # EOF: closed by it
        assert all(c == b"" or c.startswith(b"HTTP/1.1 4") for c in closed)
        for _, w in half:
            w.close()
        [sealed] = await codec.encode([payload("hello")])
        async with httpx.AsyncClient() as http:
            url = f"http://127.0.0.1:{port}/decode"
            local = await http.post(url, json=sealed_body(sealed))
            rebound = await http.post(
                url, json=sealed_body(sealed), headers={"Host": "attacker.example"}
            )
        assert local.status_code == 200
        assert rebound.status_code == 403 and "loopback" in rebound.text
    finally:
        await server.stop()


def test_the_codec_server_refuses_to_expose_itself() -> None:
    codec = EncryptionCodec.from_spec(f"k1={KEY1}")
    with pytest.raises(CodecServerError, match="token is required"):
        CodecServer(codec, "0.0.0.0", free_port(), "http://ui", token=None)
    with pytest.raises(CodecServerError, match="TLS"):
        CodecServer(codec, "0.0.0.0", free_port(), "http://ui", token="t")


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def secure(stack: Stack) -> AsyncIterator[tuple[Client, str]]:
    """A worker and client with encryption on, and a bearer token for the payment service."""
    codec = EncryptionCodec.from_spec(f"k1={KEY1}")
    client = await connect(stack.address, codec=codec, encode_failures=True)
    queue = f"secure-{uuid.uuid4().hex[:6]}"
    config = WorkerConfig(
        task_queue=queue, services=stack.services, service_tokens={"payment": SecretStr(TOKEN)}
    )
    async with build_worker(client, load_sagas(EXAMPLES).values(), config=config):
        yield client, queue


@pytest.mark.integration
async def test_history_holds_no_plaintext_payload_and_no_secret(
    stack: Stack, secure: tuple[Client, str], key: str, caplog: pytest.LogCaptureFixture
) -> None:
    client, queue = secure
    marker = f"Ada-{uuid.uuid4().hex}"
    caplog.set_level(logging.DEBUG)
    ok = await start_saga(client, ORDER, order(key, customer=marker), task_queue=queue)
    assert (await outcome(ok)).status is SagaStatus.COMPLETED
    declined = await start_saga(
        client, ORDER, order(f"{key}-d", customer=marker, amount_cents=900_000), task_queue=queue
    )
    result = await outcome(declined)  # decoded through the codec: the report reads fine
    assert result.status is SagaStatus.COMPENSATED and result.report is not None
    assert "HTTP 402" in (result.report.error or "")

    for handle in (ok, declined):
        # Read the raw history with a client that has no keys.
        raw = await stack.client.get_workflow_handle(handle.id).fetch_history()
        text = raw.to_json()
        assert marker not in text  # inputs, activity arguments and results are encrypted
        assert "card declined" not in text  # failure messages too (encode_failures)
        assert TOKEN not in text
    assert TOKEN not in caplog.text


@pytest.mark.integration
async def test_input_over_two_megabytes_is_refused_at_the_client(stack: Stack, key: str) -> None:
    with pytest.raises(SagaInputError, match="refuses payloads over 2 MB"):
        await start_saga(
            stack.client, ORDER, order(key, customer="x" * 3_000_000), task_queue="nowhere"
        )
    assert await count_workflows(stack.client, f'SagaKey = "{key}"') == 0
    # The limit counts encoded bytes: 700,000 euro signs are 0.7 M characters, 2.1 MB.
    with pytest.raises(SagaInputError, match="refuses payloads over 2 MB"):
        await start_saga(
            stack.client, ORDER, order(key, customer="\u20ac" * 700_000), task_queue="nowhere"
        )
    assert await count_workflows(stack.client, f'SagaKey = "{key}"') == 0


def test_tls_flags_become_temporal_connection_settings(
    tmp_path: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pathlib import Path

    from temporalio.envconfig import ClientConfig

    from sagaloom._cli import _parser, apply_tls_flags

    folder = Path(str(tmp_path))
    for name in ("c.pem", "k.pem", "ca.pem"):
        (folder / name).write_text("-----BEGIN CERTIFICATE-----\n")
    for _, variable in (("", "TEMPORAL_API_KEY"), ("", "TEMPORAL_TLS_CLIENT_CERT_PATH")):
        monkeypatch.delenv(variable, raising=False)
    args = _parser().parse_args(
        [
            "show",
            "x",
            "--tls-cert-path",
            str(folder / "c.pem"),
            "--tls-key-path",
            str(folder / "k.pem"),
            "--tls-ca-path",
            str(folder / "ca.pem"),
            "--tls-server-name",
            "temporal.example.com",
        ]
    )
    for _, variable in (
        ("", "TEMPORAL_TLS_CLIENT_CERT_PATH"),
        ("", "TEMPORAL_TLS_CLIENT_KEY_PATH"),
        ("", "TEMPORAL_TLS_SERVER_CA_CERT_PATH"),
        ("", "TEMPORAL_TLS_SERVER_NAME"),
    ):
        monkeypatch.setenv(variable, "")  # restored after the test
    apply_tls_flags(args)
    tls = ClientConfig.load_client_connect_config()["tls"]
    assert not isinstance(tls, bool)
    assert tls.domain == "temporal.example.com"
    assert tls.client_cert == b"-----BEGIN CERTIFICATE-----\n"
    assert tls.server_root_ca_cert == b"-----BEGIN CERTIFICATE-----\n"


@pytest.mark.parametrize(
    "echo",
    ["raw: {t}", '{{"error": "unknown key {t}"}}', "Bearer {t}", "x{t}y"],
    ids=["raw", "json", "bearer", "glued"],
)
async def test_a_configured_token_echoed_raw_in_an_error_body_is_masked(echo: str) -> None:
    """Before: tested with a 'Bearer ' prefix only, which the generic pattern masks anyway."""
    from temporalio.testing import ActivityEnvironment

    from sagaloom.participants import HttpRequest

    token = "plainvalue" + uuid.uuid4().hex[:12]  # no prefix a generic pattern would know

    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(403, text=echo.format(t=token))

    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    participant = HttpParticipant(
        {"payment": "http://payment.test"}, client=client, tokens={"payment": SecretStr(token)}
    )
    request = HttpRequest(service="payment", method="POST", path="/charges", body={})
    with pytest.raises(Exception) as caught:
        await ActivityEnvironment().run(participant.call, request)
    assert seen[0].headers["Authorization"] == f"Bearer {token}"  # sent, never echoed
    assert token not in str(caught.value) and "HTTP 403" in str(caught.value)
    await client.aclose()


@pytest.mark.integration
async def test_no_service_url_reaches_history_even_in_failures(stack: Stack, key: str) -> None:
    # configuration.md: "Service URLs live only in worker configuration, never in workflow
    # history." A history is not encrypted here, so anything in it would be readable.
    from tests._helpers import TASK_QUEUE

    await stack.fault("payment", op="do", match=key, mode="error", status=503, times=1)
    await stack.fault("shipping", op="do", match=key, mode="reject", status=422, times=1)
    handle = await start_saga(stack.client, ORDER, order(key), task_queue=TASK_QUEUE)
    result = await asyncio.wait_for(outcome(handle), 60)
    assert result.status is SagaStatus.COMPENSATED and result.report is not None
    assert "422" in (result.report.error or "")  # the failure is in history, in words
    text = (await handle.fetch_history()).to_json()
    assert "503" in text  # the retried attempt's failure is there too
    for name, url in stack.services.items():
        address = url.split("://", 1)[-1].rstrip("/")
        assert address not in text, f"{name}'s address {address} is in the saga's history"
