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
        ("SAGALOOM_OUTAGE_BUDGET_SECONDS", "-5"),
        ("SAGALOOM_BREAKER_RELEASE_PER_SECOND", "0"),
        ("SAGALOOM_SERVICE_PAYMENT_OUTAGE_BUDGET_SECONDS", "soon"),
        ("SAGALOOM_SERVICE_PAYMENT_CALLS_PER_SECOND", "-2"),
        ("SAGALOOM_SERVICE_PAYMENT_MAX_CONCURRENT_CALLS", "1.5"),
    ],
)
def test_bad_values_name_the_variable(name: str, value: str) -> None:
    env = {"SAGALOOM_SERVICE_PAYMENT": "http://127.0.0.1:1"} if "PAYMENT_" in name else {}
    with pytest.raises(ConfigError, match=name):
        WorkerConfig.from_env({**env, name: value})


def test_service_limits_are_read_like_the_service_url_and_need_one() -> None:
    env = {
        "SAGALOOM_SERVICE_PAYMENT": "http://127.0.0.1:1",
        "SAGALOOM_SERVICE_PAYMENT_CALLS_PER_SECOND": "2.5",
        "SAGALOOM_SERVICE_PAYMENT_MAX_CONCURRENT_CALLS": "4",
    }
    config = WorkerConfig.from_env(env)
    assert config.services == {"payment": "http://127.0.0.1:1"}  # the limits are not services
    limit = config.service_limits()["payment"]
    assert (limit.calls_per_second, limit.max_concurrent) == (2.5, 4)
    assert {k: v for k, v in config.to_env().items() if "PAYMENT" in k} == env
    with pytest.raises(ConfigError, match=r"SAGALOOM_SERVICE_PAYNENT_CALLS_PER_SECOND.*no URL"):
        WorkerConfig.from_env({**env, "SAGALOOM_SERVICE_PAYNENT_CALLS_PER_SECOND": "1"})


def test_embedded_default_is_tuned_and_registers_search_attributes(tmp_path: object) -> None:
    from pathlib import Path

    cmd = DevServerOptions(db_file=Path("x.db")).command()
    assert cmd[1:3] == ["server", "start-dev"]
    joined = " ".join(cmd)
    assert "--sqlite-pragma journal_mode=wal --sqlite-pragma synchronous=normal" in joined
    for name in ("SagaName", "SagaStatus", "SagaStep", "SagaKey", "SagaloomVersion"):
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
    from sagaloom.client import DEFAULT_UI
    from sagaloom.server import _stack as _dev

    folder = Path(str(tmp_path))
    monkeypatch.chdir(folder)
    monkeypatch.delenv("SAGALOOM_UI", raising=False)
    assert _cli.default_ui() == DEFAULT_UI
    (folder / ".sagaloom").mkdir()
    (folder / ".sagaloom" / _dev.UI_FILE).write_text("http://127.0.0.1:18233\n")
    assert _cli.default_ui() == "http://127.0.0.1:18233"
    monkeypatch.setenv("SAGALOOM_UI", "https://temporal.example")
    assert _cli.default_ui() == "https://temporal.example"


def test_every_field_is_a_row_of_the_settings_table_with_the_same_default() -> None:
    from dataclasses import fields

    from sagaloom._config._settings import WORKER_SETTINGS

    assert sorted(s.field for s in WORKER_SETTINGS) == sorted(f.name for f in fields(WorkerConfig))
    plain = WorkerConfig()
    for s in WORKER_SETTINGS:
        if s.kind not in ("services", "tokens", "budgets", "rates", "concurrency", "list"):
            assert getattr(plain, s.field) == s.default, s.field


def test_to_env_and_from_env_are_inverse_for_every_setting() -> None:
    from pydantic import SecretStr

    config = WorkerConfig(
        address="t:7233",
        namespace="shop",
        task_queue="orders",
        services={"payment": "http://p:1"},
        service_tokens={"payment": SecretStr("tok")},
        saga_modules=("a.b", "c"),
        max_concurrent_activities=7,
        max_concurrent_workflow_tasks=8,
        max_cached_workflows=9,
        tuner="resource",
        poller="autoscaling",
        max_activities_per_second=2.5,
        max_task_queue_activities_per_second=10.0,
        processes=3,
        metrics_address="127.0.0.1:9000",
        health_address="127.0.0.1:9001",
        tracing=True,
        reply_secret=SecretStr("s"),
        encryption_keys=SecretStr("k=abc"),
        encode_failures=True,
        graceful_shutdown=timedelta(seconds=31),
        nats_url="nats://127.0.0.1:4333",
        nats_namespace="shop",
        nats_max_msgs=5,
        nats_max_bytes=6,
        drawings_url="http://127.0.0.1:8888",
        payload_store="s3",
        payload_threshold=1000,
        payload_bucket="docs",
        payload_prefix="shop/",
        payload_endpoint="http://127.0.0.1:9",
        max_input_bytes=5_000_000,
        payload_sweep=timedelta(minutes=5),
        triggers=("orders.new=OrderSaga",),
        sandboxed=False,
        breaker=False,
        breaker_threshold=3,
        breaker_window=timedelta(seconds=7),
        breaker_probe=timedelta(seconds=2),
        breaker_release_rate=0.5,
        outage_budget=timedelta(seconds=600),
        outage_budgets={"payment": timedelta(seconds=60)},
        service_rates={"payment": 2.5},
        service_concurrency={"payment": 4},
        deployment="shop",
        build_id="b1",
        versioning="auto-upgrade",
    )
    again = WorkerConfig.from_env(config.to_env())
    assert again == config
    assert all(getattr(again, f) != getattr(WorkerConfig(), f) for f in again.__dataclass_fields__)


@pytest.mark.parametrize("value", ["maybe", "2"])
def test_a_true_false_variable_is_read_one_way_and_a_typo_is_named(value: str) -> None:
    with pytest.raises(ConfigError, match="SAGALOOM_TRACING"):
        WorkerConfig.from_env({"SAGALOOM_TRACING": value})
    for word, meant in (("yes", True), ("on", True), ("1", True), ("off", False), ("", False)):
        assert WorkerConfig.from_env({"SAGALOOM_TRACING": word}).tracing is meant


def test_worker_flags_come_from_the_table_and_override_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from sagaloom._cli import parser, worker_config
    from sagaloom._cli._common import fill_connection
    from sagaloom._config._settings import WORKER_SETTINGS

    worker_help = parser()._subparsers._group_actions[0].choices["worker"].format_help()  # type: ignore[union-attr]
    for s in WORKER_SETTINGS:
        if s.flag:
            assert s.flag in worker_help and s.env in worker_help, s.field
    monkeypatch.setenv("SAGALOOM_SERVICE_PAYMENT", "http://p:1")
    monkeypatch.setenv("SAGALOOM_PROCESSES", "2")
    monkeypatch.setenv("SAGALOOM_SAGA_MODULES", "env.sagas")
    args = parser().parse_args(
        ["worker", "--processes", "4", "--no-sandbox", "--tracing", "--module", "cli.sagas",
         "--service", "stock=http://s:2", "--graceful-shutdown-seconds", "3"]
    )  # fmt: skip
    fill_connection(args)
    config = worker_config(args)
    assert (config.processes, config.sandboxed, config.tracing) == (4, False, True)
    assert config.saga_modules == ("env.sagas", "cli.sagas")
    assert config.services == {"payment": "http://p:1", "stock": "http://s:2"}
    assert config.graceful_shutdown == timedelta(seconds=3)
    with pytest.raises(ConfigError, match="--max-cached-workflows"):
        worker_config(parser().parse_args(["worker", "--max-cached-workflows", "0"]))


def test_every_command_shows_an_example_in_its_help() -> None:
    from sagaloom._cli import parser

    commands = parser()._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    assert len(commands) == 24
    for name, command in commands.items():
        text = command.format_help()
        assert "example:\n  " in text, name
        example = text.split("example:\n  ", 1)[1]
        assert f"saga {name}" in example, name


def test_the_docs_configuration_tables_are_the_generated_ones() -> None:
    from tests._docs import CONFIG_PAGE, generated_blocks

    page = CONFIG_PAGE.read_text()
    for block in generated_blocks().values():
        assert block in page, "docs drifted from the settings table: run ./run docs"


def test_every_flag_says_what_it_does_and_a_switch_says_what_the_value_it_sets_means() -> None:
    """``--no-sandbox`` reads as running outside the sandbox, never as its opposite."""
    import argparse

    from sagaloom._cli import parser, worker_config
    from sagaloom._cli._common import fill_connection
    from sagaloom._config._settings import WORKER_SETTINGS

    commands = parser()._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    for name, command in commands.items():
        for action in command._actions:
            if action.option_strings and action.dest != "help":
                assert action.help, f"saga {name} {action.option_strings[0]} has no help"
    # what each switch must say, from the settings' own words (the spec of each value)
    said = {
        "--no-sandbox": ("outside the SDK's sandbox", "in the SDK's sandbox,"),
        "--no-breaker": ("never wait for a down service", "wait while their service is down"),
        "--tracing": ("OpenTelemetry tracing", "no tracing"),
        "--encode-failures": ("encrypt failure messages", "stay readable"),
    }
    switches = {s.flag: s for s in WORKER_SETTINGS if s.kind == "bool" and s.flag}
    assert set(switches) == set(said)
    for flag, (means, not_means) in said.items():
        action = next(
            a
            for a in commands["worker"]._actions
            if flag in a.option_strings and isinstance(a, argparse._StoreConstAction)
        )
        assert means in (action.help or "") and not_means not in (action.help or ""), flag
        args = parser().parse_args(["worker", flag])
        fill_connection(args)
        value = getattr(worker_config(args), switches[flag].field)
        assert value is (not flag.startswith("--no-")), flag  # the flag sets what it says
        word = switches[flag].words[0 if value else 1]
        assert f"{switches[flag].env}={word}" in (action.help or ""), flag
    dev = commands["dev"].format_help()
    assert "--ui-port PORT" in dev and "--data-dir DIR" in dev


def test_the_cli_reference_is_the_generated_one() -> None:
    from tests._docs import CLI_PAGE, cli_reference

    assert CLI_PAGE.read_text() == cli_reference(), "docs/cli.md drifted: run ./run docs"
