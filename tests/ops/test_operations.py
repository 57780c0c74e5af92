"""The operations pack (deploy/prometheus, deploy/grafana): no alert or panel that cannot fire.

``promtool`` (Debian's ``prometheus`` package, installed by ``./run test``) checks the rules
and runs their unit tests. Then a real Prometheus, started here on loopback, scrapes a real
worker process that ran real sagas — completed, compensated, parked, a broker reply, a dead
letter, a wait for an exclusive key, a wait for a service whose breaker opened — and every
dashboard panel's query returns series with the labels its legend names, every metric and
label an alert reads exists, and the parked-saga alert fires (its ``for:`` shortened).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import httpx
import nats
import pytest
import pytest_asyncio
import yaml

from sagaloom import Http, SagaStatus
from sagaloom.client import outcome, start_saga
from sagaloom.participants import REPLY_SUBJECT
from sagaloom.server import NatsServer, free_port
from sagaloom.worker import load_sagas
from services import Warehouse
from tests._exclusive_sagas import EXCLUSIVE
from tests._helpers import ROOT, Stack, order, wait_for_status
from tests._outage_sagas import OUTAGE
from workflows.fulfilment import FULFILMENT
from workflows.guarded_order import GUARDED_ORDER
from workflows.order import ORDER

DEPLOY = ROOT / "deploy"
RULES = DEPLOY / "prometheus" / "alerts.yml"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "sagaloom.json"
OUTAGE_SERVICES = sorted(
    {
        step.action.service
        for workflow in load_sagas(["tests._outage_sagas"]).values()
        for step in workflow.saga.steps
        if isinstance(step.action, Http)
    }
)
"""Every service the outage sagas call (the ops worker registers them all: each needs a URL)."""


def alerts() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def panel_targets() -> list[tuple[str, str, str]]:
    """``(panel title, expression, legend)`` of every query of the dashboard."""
    dashboard = json.loads(DASHBOARD.read_text())
    return [
        (panel["title"], target["expr"], target.get("legendFormat", ""))
        for panel in dashboard["panels"]
        for target in panel["targets"]
    ]


def promtool() -> str:
    found = shutil.which("promtool")
    assert found, "promtool is missing: ./run test installs Debian's prometheus package"
    return found


def test_the_rules_are_valid_and_each_alert_fires_and_stays_silent_in_promtool() -> None:
    checked = subprocess.run(
        [promtool(), "check", "rules", str(RULES)], capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(alerts())} rules found" in checked.stdout
    tested = subprocess.run(
        [promtool(), "test", "rules", "alerts.test.yml"],
        capture_output=True,
        text=True,
        cwd=RULES.parent,
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr
    cases = yaml.safe_load((RULES.parent / "alerts.test.yml").read_text())["tests"]
    evaluations = [e for case in cases for e in case["alert_rule_test"]]
    for rule in alerts():
        mine = [e for e in evaluations if e["alertname"] == rule["alert"]]
        assert any(e["exp_alerts"] for e in mine), f"{rule['alert']}: no case where it fires"
        assert any(not e["exp_alerts"] for e in mine), f"{rule['alert']}: no silent case"


def test_every_alert_says_what_to_do_and_has_a_runbook_section() -> None:
    runbook = (ROOT / "docs" / "operating.md").read_text()
    for rule in alerts():
        notes = rule["annotations"]
        assert notes["summary"] and len(notes["description"]) > 60, rule["alert"]
        anchor = notes["runbook"].split("#", 1)[1]
        assert f"### {rule['alert']}" in runbook and anchor == rule["alert"].lower(), anchor


# -- the live check: a real worker, real sagas, a real Prometheus ---------------------------------


@pytest.fixture(scope="module")
def ops_worker(
    stack: Stack, nats_server: NatsServer, warehouse: Warehouse
) -> Iterator[tuple[str, str]]:
    """A worker process with metrics, the broker and quick breakers: ``(task queue, metrics)``."""
    queue, metrics = f"ops-{free_port()}", f"127.0.0.1:{free_port()}"
    down = f"http://127.0.0.1:{free_port()}"  # nobody listens: the outage saga's service is down
    env = {f"SAGALOOM_SERVICE_{name.upper()}": down for name in OUTAGE_SERVICES}
    env |= {"SAGALOOM_BREAKER": "true", "SAGALOOM_BREAKER_THRESHOLD": "2"}
    process = stack.start_worker(
        f"ops-{queue}",
        *("--module", "workflows.fulfilment", "--module", "tests._exclusive_sagas"),
        *("--module", "tests._outage_sagas", "--module", "workflows.guarded_order"),
        *("--task-queue", queue, "--nats", nats_server.url, "--metrics-address", metrics),
        env=env,
    )
    yield queue, metrics
    process.terminate()
    process.wait(20)


@pytest.fixture(scope="module")
def prometheus(
    ops_worker: tuple[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A real Prometheus scraping the worker every second, with the shipped rules (``for:``
    shortened to 3 s). Yields its base URL."""
    binary = shutil.which("prometheus")
    assert binary, "prometheus is missing: ./run test installs Debian's prometheus package"
    folder = tmp_path_factory.mktemp("prometheus")
    rules = re.sub(r"^(\s+for:) \S+$", r"\1 3s", RULES.read_text(), flags=re.M)
    (folder / "alerts.yml").write_text(rules)
    (folder / "prometheus.yml").write_text(
        yaml.safe_dump(
            {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "rule_files": ["alerts.yml"],
                "scrape_configs": [
                    {
                        "job_name": "sagaloom-workers",
                        "static_configs": [{"targets": [ops_worker[1]]}],
                    }
                ],
            }
        )
    )
    address = f"127.0.0.1:{free_port()}"
    log = open(folder / "prometheus.log", "ab")  # noqa: SIM115
    process = subprocess.Popen(
        [
            binary,
            f"--config.file={folder / 'prometheus.yml'}",
            f"--storage.tsdb.path={folder / 'data'}",
            f"--web.listen-address={address}",
            "--log.level=warn",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"http://{address}/-/ready", timeout=2).status_code == 200:
                break
        except httpx.TransportError:
            pass
        assert process.poll() is None and time.monotonic() < deadline, "prometheus did not start"
        time.sleep(0.2)
    yield f"http://{address}"
    process.terminate()
    process.wait(20)


async def query(base: str, expr: str) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(timeout=10) as http:
        answer = (await http.get(f"{base}/api/v1/query", params={"query": expr})).json()
    assert answer["status"] == "success", (expr, answer)
    return list(answer["data"]["result"])


async def eventually(base: str, expr: str, within: float = 90) -> list[dict[str, Any]]:
    deadline = time.monotonic() + within
    while True:
        found = await query(base, expr)
        if found or time.monotonic() > deadline:
            return found
        await asyncio.sleep(1)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def ran(stack: Stack, ops_worker: tuple[str, str], nats_server: NatsServer) -> str:
    """Sagas of every kind on the worker; returns the parked saga's workflow id."""
    queue, _ = ops_worker
    run = f"ops{free_port()}"
    client = stack.client
    await stack.fault("payment", op="undo", match=f"{run}-parked", mode="reject", status=409)
    started = [
        await start_saga(client, ORDER, order(f"{run}-ok"), task_queue=queue),
        await start_saga(
            client, ORDER, order(f"{run}-declined", amount_cents=250_000), task_queue=queue
        ),
        await start_saga(
            client,
            FULFILMENT,
            {"order_id": f"{run}-f", "sku": "gadget", "quantity": 2},
            task_queue=queue,
        ),
    ]
    transfer = {"source": f"a-{run}", "target": f"b-{run}", "amount_cents": 100, "hold_seconds": 2}
    started += [
        await start_saga(
            client, EXCLUSIVE, {**transfer, "transfer_id": f"{run}-t{n}"}, task_queue=queue
        )
        for n in (1, 2)
    ]
    parked = await start_saga(client, ORDER, order(f"{run}-parked", country="AQ"), task_queue=queue)
    await stack.fault("payment", op="do", match=f"{run}-held", mode="error", status=500)
    held = await start_saga(client, GUARDED_ORDER, order(f"{run}-held"), task_queue=queue)
    await start_saga(client, OUTAGE, {"order_id": f"{run}-down"}, task_queue=queue)  # waits
    for handle in started:
        await asyncio.wait_for(outcome(handle), 90)
    await wait_for_status(parked, SagaStatus.NEEDS_ATTENTION, within=60)
    await wait_for_status(held, SagaStatus.HELD, within=90)  # its charge answers 500 for good
    broker = await nats.connect(nats_server.url)
    await broker.jetstream().publish(REPLY_SUBJECT, b"{not json")  # a dead letter
    await broker.close()
    return parked.id


@pytest.mark.integration
async def test_every_dashboard_panel_returns_series_with_the_labels_it_shows(
    prometheus: str, ran: str
) -> None:
    missing, rows = [], []
    for title, expr, legend in panel_targets():
        found = await eventually(prometheus, expr)
        if not found:
            missing.append(f"{title}: {expr}")
            continue
        for label in re.findall(r"\{\{(\w+)\}\}", legend):
            if not any(label in series["metric"] for series in found):
                missing.append(f"{title}: no series labelled {label!r}")
        first = {k: v for k, v in found[0]["metric"].items() if k in legend}
        rows.append(f"| {title} | `{expr}` | {len(found)} | {first} |")
    assert not missing, "\n".join(missing)
    if os.environ.get("SAGALOOM_RENDER_PANELS"):  # by hand: the table in docs/operating.md
        page = ROOT / "docs" / "operating.md"
        table = "| panel | query | series | labels of the first |\n|---|---|---|---|\n"
        table += "\n".join(rows)
        text = re.sub(
            r"(<!-- panels:start -->\n).*?(<!-- panels:end -->)",
            lambda m: m.group(1) + table + "\n" + m.group(2),
            page.read_text(),
            flags=re.S,
        )
        page.write_text(text)


@pytest.mark.integration
async def test_every_metric_and_label_an_alert_reads_exists(prometheus: str, ran: str) -> None:
    missing = []
    for rule in alerts():
        expr = rule["expr"]
        grouped = {g.strip() for by in re.findall(r"by \(([^)]*)\)", expr) for g in by.split(",")}
        for name, matchers in set(re.findall(r"\b((?:sagaloom|temporal)_\w+)(\{[^}]*\})?", expr)):
            found = await eventually(prometheus, name + matchers)
            if not found:
                missing.append(f"{rule['alert']}: no series {name}{matchers}")
                continue
            for label in grouped - {"le"}:
                if not any(label in series["metric"] for series in found):
                    missing.append(f"{rule['alert']}: {name} has no label {label!r}")
    assert not missing, "\n".join(missing)


@pytest.mark.integration
async def test_a_parked_saga_fires_its_alert_and_the_compensation_failure_pages(
    prometheus: str, ran: str
) -> None:
    firing = await eventually(
        prometheus, 'ALERTS{alertname="SagaParked", alertstate="firing"}', within=120
    )
    assert [a["metric"]["saga"] for a in firing] == ["OrderSaga"]
    failed = await eventually(
        prometheus, 'ALERTS{alertname="SagaCompensationFailed", alertstate="firing"}'
    )
    assert {(a["metric"]["saga"], a["metric"]["step"]) for a in failed} == {
        ("OrderSaga", "charge-payment")
    }
    letters = await eventually(
        prometheus, 'ALERTS{alertname="SagaDeadLettersGrowing", alertstate="firing"}'
    )
    assert {a["metric"]["kind"] for a in letters} == {"reply"}
    held = await eventually(
        prometheus, 'ALERTS{alertname="SagasHeld", alertstate="firing"}', within=120
    )
    assert {(a["metric"]["saga"], a["metric"]["step"]) for a in held} == {
        ("GuardedOrderSaga", "charge-payment")
    }
