"""Worker configuration from the environment."""

from __future__ import annotations

from datetime import timedelta

import pytest

from sagaloom.server import DevServerOptions
from sagaloom.worker import ConfigError, WorkerConfig


def test_reads_the_standard_temporal_variables_and_service_urls() -> None:
    config = WorkerConfig.from_env(
        {
            "TEMPORAL_ADDRESS": "temporal:7233",
            "TEMPORAL_NAMESPACE": "shop",
            "SAGALOOM_TASK_QUEUE": "orders",
            "SAGALOOM_SERVICE_PAYMENT": "http://payment:8080",
            "SAGALOOM_GRACEFUL_SHUTDOWN_SECONDS": "30",
            "SAGALOOM_SAGA_MODULES": "shop.sagas, shop.more",
        }
    )
    assert (config.address, config.namespace, config.task_queue) == (
        "temporal:7233",
        "shop",
        "orders",
    )
    assert config.services == {"payment": "http://payment:8080"}
    assert config.graceful_shutdown == timedelta(seconds=30)
    assert config.saga_modules == ("shop.sagas", "shop.more")


def test_defaults() -> None:
    config = WorkerConfig.from_env({})
    assert (config.address, config.namespace, config.task_queue) == (
        "localhost:7233",
        "default",
        "sagaloom",
    )


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SAGALOOM_MAX_CONCURRENT_ACTIVITIES", "many"),
        ("SAGALOOM_MAX_CACHED_WORKFLOWS", "-1"),
        ("SAGALOOM_SERVICE_PAYMENT", "payment:8080"),
        ("SAGALOOM_NATS_NAMESPACE", "Bad.Name"),
    ],
)
def test_bad_values_name_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        WorkerConfig.from_env({name: value})


def test_embedded_default_is_tuned_and_registers_search_attributes(tmp_path: object) -> None:
    from pathlib import Path

    cmd = DevServerOptions(db_file=Path("x.db")).command()
    assert cmd[1:3] == ["server", "start-dev"]
    joined = " ".join(cmd)
    assert "--sqlite-pragma journal_mode=wal --sqlite-pragma synchronous=normal" in joined
    for name in ("SagaName", "SagaStatus", "SagaStep", "SagaKey"):
        assert f"--search-attribute {name}=Keyword" in joined
    untuned = " ".join(DevServerOptions(db_file=Path("x.db"), tuned=False).command())
    assert "--sqlite-pragma" not in untuned


def test_the_broker_namespace_names_every_subject_stream_and_consumer() -> None:
    from sagaloom.participants import (
        COMMANDS_STREAM,
        DEAD_STREAM,
        REPLIES_STREAM,
        REPLY_SUBJECT,
        BrokerNames,
    )

    default = BrokerNames()  # the constants participants code against, byte for byte
    assert (default.reply_subject, default.replies_stream) == (REPLY_SUBJECT, REPLIES_STREAM)
    assert (default.commands_stream, default.dead_stream) == (COMMANDS_STREAM, DEAD_STREAM)
    assert default.reply_consumer == "sagaloom-replies"
    assert default.trigger_consumer("S", "a.b") == "sagaloom-trigger-S-a_b"
    other = BrokerNames("shop-b")
    assert other.command_subject("warehouse.pack") == "shop-b.cmd.warehouse.pack"
    assert other.replies_stream == "SHOP_B_REPLIES" and other.reply_consumer == "shop-b-replies"
    assert {s for s, _ in other.streams()}.isdisjoint({s for s, _ in default.streams()})
    assert WorkerConfig.from_env({"SAGALOOM_NATS_NAMESPACE": "shop-b"}).nats_namespace == "shop-b"
    assert WorkerConfig(nats_namespace="shop-b").to_env()["SAGALOOM_NATS_NAMESPACE"] == "shop-b"


def test_cli_links_follow_the_ui_saga_dev_runs(
    tmp_path: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before: links said :8233 whatever port the dev server's UI had."""
    from pathlib import Path

    from sagaloom import _cli
    from sagaloom.server import _stack as _dev
    from sagaloom.client import DEFAULT_UI

    assert _cli.UI_FILE == _dev.UI_FILE  # the file saga dev writes is the one the CLI reads
    folder = Path(str(tmp_path))
    monkeypatch.chdir(folder)
    monkeypatch.delenv("SAGALOOM_UI", raising=False)
    assert _cli.default_ui() == DEFAULT_UI
    (folder / ".sagaloom").mkdir()
    (folder / ".sagaloom" / _dev.UI_FILE).write_text("http://127.0.0.1:18233\n")
    assert _cli.default_ui() == "http://127.0.0.1:18233"
    monkeypatch.setenv("SAGALOOM_UI", "https://temporal.example")
    assert _cli.default_ui() == "https://temporal.example"
