"""A saga's drawing (``saga graph``) and a run painted on it (``saga show --graph``).

What docs/see-a-saga.md says a drawing shows: every step, left to right by dependency
(parallel steps one above the other in a column), each step's compensation right under it, the
step's kind (pivot, retriable), what it calls, a ``when=`` condition, a fan-out's items and a
child saga; and, painted, each step's state in the run: done, failed (with its error), undone,
waiting, never run. The rules here come from that page; the drawings of the example sagas are
committed under docs/contracts and compared (tests/house/test_contracts.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from temporalio.client import Client
from temporalio.worker import Worker

from sagaloom import SagaStatus, StepStatus
from sagaloom._drawing import drawing_of, paint, render
from sagaloom._runtime._links import LINKS
from sagaloom._saga._model import SagaState, StepState
from sagaloom.client import outcome, start_saga
from sagaloom.server import free_port
from sagaloom.worker import SagaloomPlugin, load_sagas
from tests._helpers import ROOT, TASK_QUEUE, Stack, cli, order
from tests._sagas import CONDITIONAL, DIAMOND, NESTING, PIVOTED
from workflows.fulfilment import FULFILMENT
from workflows.itinerary import ITINERARY
from workflows.order import ORDER, OrderSaga
from workflows.trip import TRIP

SVG = "{http://www.w3.org/2000/svg}"


def boxes(svg: str) -> dict[str, dict[str, Any]]:
    """Each box of an SVG drawing: its paint, position and text, by step title."""
    root = ET.fromstring(svg)
    found = {}
    for group in root.iter(f"{SVG}g"):
        rect = group.find(f"{SVG}rect")
        assert rect is not None
        texts = [t.text or "" for t in group.findall(f"{SVG}text")]
        found[group.attrib["data-step"]] = {
            "paint": group.attrib["class"].split()[1],
            "x": float(rect.attrib["x"]),
            "y": float(rect.attrib["y"]),
            "text": texts,
        }
    return found


def test_steps_go_left_to_right_each_compensation_under_its_step() -> None:
    drawn = boxes(render(drawing_of(ORDER), "svg"))
    names = ["reserve-stock", "charge-payment", "create-shipment"]
    assert set(drawn) == {*names, *(f"undo {n}" for n in names)}
    xs = [drawn[n]["x"] for n in names]
    assert xs == sorted(xs) and len(set(xs)) == 3  # one after another
    for n in names:
        assert drawn[f"undo {n}"]["x"] == drawn[n]["x"]
        assert drawn[f"undo {n}"]["y"] > drawn[n]["y"]
    assert "payment: POST /charges" in drawn["charge-payment"]["text"]
    assert "payment: POST /charges/refund" in drawn["undo charge-payment"]["text"]


def test_parallel_steps_share_a_column_and_a_join_comes_after_both() -> None:
    drawn = boxes(render(drawing_of(DIAMOND), "svg"))  # a; b and c after a; d after b and c
    assert drawn["b"]["x"] == drawn["c"]["x"] > drawn["a"]["x"]
    assert drawn["b"]["y"] != drawn["c"]["y"]
    assert drawn["d"]["x"] > drawn["b"]["x"]
    arrows = set(drawing_of(DIAMOND).arrows)
    assert {("s0", "s1"), ("s0", "s2"), ("s1", "s3"), ("s2", "s3"), ("start", "s0")} == arrows


def test_kinds_conditions_fan_outs_children_commands_and_timers_are_named() -> None:
    pivoted = boxes(render(drawing_of(PIVOTED), "svg"))
    assert "pivot" in pivoted["b"]["text"] and "retriable" in pivoted["c"]["text"]
    assert "undo c" not in pivoted  # a retriable step has no compensation
    conditional = {b.title: b.lines for b in drawing_of(CONDITIONAL).boxes}
    assert any(line.startswith("when ") for line in conditional["b"])
    nesting = {b.title: b.lines for b in drawing_of(NESTING).boxes}
    assert nesting["trip"] == ["child saga Rules2Saga"]
    assert nesting["undo trip"] == ["the child saga compensates itself"]
    fulfilment = {b.title: b.lines for b in drawing_of(FULFILMENT).boxes}
    assert fulfilment["pack"] == [  # the subject as the saga names it, and the reply it awaits
        "command warehouse.pack",
        "then waits for its reply (up to 2 min)",
    ]
    itinerary = {b.title: b.lines for b in drawing_of(ITINERARY).boxes}
    assert itinerary["book-flights"][0].startswith("for each item, 4 at once")
    trip = {b.title: b.lines for b in drawing_of(TRIP).boxes}
    assert any(line.startswith("timer") for lines in trip.values() for line in lines)


@pytest.mark.parametrize("fmt", ["mermaid", "dot", "svg"])
def test_every_format_names_every_step_and_compensation(fmt: str) -> None:
    text = render(drawing_of(ITINERARY), fmt)
    for step in ITINERARY.steps:
        assert step.name in text
        assert f"undo {step.name}" in text
    if fmt == "svg":
        ET.fromstring(text)  # well-formed, standalone
    if fmt == "dot":
        assert text.startswith('digraph "ItinerarySaga" {') and text.rstrip().endswith("}")


def run_state(**statuses: StepStatus) -> SagaState:
    return SagaState(
        saga="OrderSaga",
        key="o-42",
        status=SagaStatus.COMPENSATED,
        steps=[
            StepState(
                name=name,
                kind="http",
                status=status,
                attempts=3 if status is StepStatus.FAILED else 1,
                error="ParticipantRejected: card declined" if status is StepStatus.FAILED else None,
                has_compensation=True,
            )
            for name, status in statuses.items()
        ],
    )


def test_a_run_paints_what_ran_failed_was_undone_and_never_ran() -> None:
    state = run_state(
        **{"reserve-stock": StepStatus.COMPENSATED, "charge-payment": StepStatus.FAILED}
    )  # create-shipment never started: a history does not list it
    drawn = boxes(render(paint(drawing_of(ORDER), state), "svg"))
    assert drawn["reserve-stock"]["paint"] == "done"
    assert drawn["undo reserve-stock"]["paint"] == "undone"
    assert drawn["charge-payment"]["paint"] == "failed"
    failed = " ".join(drawn["charge-payment"]["text"])
    assert "3 attempts" in failed and "card declined" in failed
    assert drawn["undo charge-payment"]["paint"] == "not-run"  # a refused step is not undone
    assert drawn["create-shipment"]["paint"] == "not-run"
    assert drawn["undo create-shipment"]["paint"] == "not-run"
    title = ET.fromstring(render(paint(drawing_of(ORDER), state), "svg")).find(f"{SVG}title")
    assert title is not None and title.text == "OrderSaga · COMPENSATED · o-42"


def test_a_waiting_step_says_what_it_waits_for() -> None:
    state = run_state(**{"reserve-stock": StepStatus.DONE, "charge-payment": StepStatus.WAITING})
    state.status = SagaStatus.WAITING
    state.steps[1].waiting_for = "payment"
    painted = paint(drawing_of(ORDER), state)
    box = next(b for b in painted.boxes if b.title == "charge-payment")
    assert box.paint == "waiting" and "waits for payment" in box.note
    mermaid = render(painted, "mermaid")
    assert re.search(r"class s1 waiting", mermaid) and "waits for payment" in mermaid


def test_a_held_step_says_it_waits_for_an_operator() -> None:
    state = run_state(**{"reserve-stock": StepStatus.DONE, "charge-payment": StepStatus.FAILED})
    state.status, state.parked_step = SagaStatus.HELD, "charge-payment"
    box = next(b for b in paint(drawing_of(ORDER), state).boxes if b.title == "charge-payment")
    assert box.paint == "held" and box.note.startswith("for an operator (saga redrive)")
    assert "card declined" in box.note


def test_an_unknown_format_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown format 'png'; choose one of: mermaid, dot, svg"):
        render(drawing_of(ORDER), "png")


@pytest.mark.integration
async def test_show_graph_paints_a_compensated_run_read_with_or_without_a_worker(
    stack: Stack, key: str
) -> None:
    # a card declined at charge-payment: reserve-stock undone, create-shipment never run
    handle = await start_saga(
        stack.client, ORDER, order(key, amount_cents=200_000), task_queue=TASK_QUEUE
    )
    assert (await outcome(handle)).status is SagaStatus.COMPENSATED
    shown = await asyncio.to_thread(
        cli, "show", handle.id, "--graph", "--format", "svg", address=stack.address
    )
    assert shown.returncode == 0, shown.stderr
    drawn = boxes(shown.stdout)
    assert drawn["reserve-stock"]["paint"] == "done"
    assert drawn["undo reserve-stock"]["paint"] == "undone"
    assert drawn["charge-payment"]["paint"] == "failed"
    assert "card declined" in " ".join(drawn["charge-payment"]["text"])
    assert drawn["create-shipment"]["paint"] == drawn["undo create-shipment"]["paint"] == "not-run"

    # a run no worker polls for: read from its history, nothing ran yet
    idle = await start_saga(stack.client, ORDER, order(f"{key}-idle"), task_queue=f"none-{key}")
    try:
        waiting = await asyncio.to_thread(
            cli, "show", idle.id, "--graph", "--format", "mermaid", address=stack.address
        )
    finally:
        await idle.terminate("test: drawn while no worker polled")
    assert waiting.returncode == 0, waiting.stderr
    assert "class s0,s0u,s1,s1u,s2,s2u not_run" in waiting.stdout
    assert f"RUNNING · {key}-idle" in waiting.stdout


@pytest.mark.integration
async def test_show_graph_of_an_unknown_run_or_a_saga_no_module_defines_is_one_clear_line(
    stack: Stack, key: str
) -> None:
    unknown = await asyncio.to_thread(
        cli, "show", f"NoSuchSaga-{key}", "--graph", address=stack.address
    )
    assert unknown.returncode == 2 and f"saga 'NoSuchSaga-{key}'" in unknown.stderr
    handle = await start_saga(stack.client, ORDER, order(key), task_queue=TASK_QUEUE)
    await outcome(handle)
    other = await asyncio.to_thread(
        cli, "show", handle.id, "--graph", address=stack.address,
        env={"SAGALOOM_SAGA_MODULES": "workflows.trip"},
    )  # fmt: skip
    assert other.returncode == 2, other.stdout
    assert f"run '{handle.id}' is a OrderSaga; no module given defines it" in other.stderr
    assert "sagas known: TripSaga" in other.stderr and "Traceback" not in other.stderr
    graph = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "sagaloom", "graph", "NoSuchSaga", "--module", "workflows.order"],
        capture_output=True, text=True, cwd=ROOT, timeout=60,
    )  # fmt: skip
    assert graph.returncode == 2 and "unknown saga 'NoSuchSaga'; known sagas: OrderSaga" in (
        graph.stderr
    )


GOLDEN = ROOT / "tests" / "golden" / "drawings"
TEST_SAGA_MODULES = [
    f"tests.{p.stem}" for p in sorted((ROOT / "tests").glob("_*sagas.py"))
    if p.stem != "_impure_sagas"  # its builders call the clock on purpose (the sandbox test)
]  # fmt: skip


def drawings() -> dict[str, str]:
    """Every test saga's drawing, as Mermaid (the readable diff), by file name."""
    sagas = load_sagas(TEST_SAGA_MODULES)
    return {f"{name}.mmd": render(drawing_of(cls.saga), "mermaid") for name, cls in sagas.items()}


def test_every_test_sagas_drawing_is_the_committed_one() -> None:
    """Golden drawings of every shape the tests define (``python -m tests.runtime.test_graphs``
    writes them); the example sagas' are docs/contracts' (tests/house/test_contracts.py)."""
    fresh = drawings()
    assert len(fresh) >= 40
    committed = {p.name: p.read_text() for p in GOLDEN.glob("*.mmd")}
    assert sorted(committed) == sorted(fresh), "regenerate: python -m tests.runtime.test_graphs"
    drifted = [name for name, text in fresh.items() if committed[name] != text]
    assert not drifted, f"drawings changed (python -m tests.runtime.test_graphs): {drifted}"


@contextlib.contextmanager
def drawing_server(address: str, *extra: str, env: dict[str, str] | None = None) -> Any:
    """``saga codec-server`` drawing the example order saga's runs; yields its base URL."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "sagaloom", "codec-server", "--port", str(port), "--module",
         "workflows.order", "--address", address, *extra],
        cwd=ROOT, env={**os.environ, **(env or {})}, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                httpx.get(f"{url}/sagas/x/graph", timeout=1)
                break
            except httpx.HTTPError:
                assert process.poll() is None, process.stdout.read() if process.stdout else ""
                time.sleep(0.05)
        yield url
    finally:
        process.terminate()
        process.wait(10)


@pytest.mark.integration
async def test_the_codec_server_draws_a_run_for_whoever_may_decode(stack: Stack, key: str) -> None:
    handle = await start_saga(
        stack.client, ORDER, order(key, amount_cents=200_000), task_queue=TASK_QUEUE
    )
    await outcome(handle)
    quoted = quote(handle.id, safe="")
    with drawing_server(stack.address, env={"SAGALOOM_CODEC_TOKEN": "s3cret"}) as url:
        async with httpx.AsyncClient(timeout=30) as http:
            refused = await http.get(f"{url}/sagas/{quoted}/graph.svg")
            assert refused.status_code == 401  # the codecs' bearer token, for the drawing too
            auth = {"Authorization": "Bearer s3cret"}
            svg = await http.get(f"{url}/sagas/{quoted}/graph.svg", headers=auth)
            assert svg.status_code == 200 and svg.headers["X-Saga-Running"] == "no"
            drawn = boxes(svg.text)
            assert drawn["charge-payment"]["paint"] == "failed"
            assert drawn["undo reserve-stock"]["paint"] == "undone"
            unknown = await http.get(f"{url}/sagas/NoSuch-{key}/graph.svg", headers=auth)
            assert unknown.status_code == 404 and f"no saga run 'NoSuch-{key}'" in unknown.text
            page = await http.get(f"{url}/sagas/{quoted}/graph")  # no data in it: no token
            assert page.status_code == 200 and 'location.pathname + ".svg"' in page.text


@pytest.mark.integration
@pytest.mark.slow
async def test_the_web_ui_links_a_running_saga_to_its_drawing_which_follows_the_run(
    stack: Stack, dev_server: Any, key: str
) -> None:
    from playwright.async_api import async_playwright

    from tests.ops.test_web_ui import CHROMIUM, FLAGS

    # the shipment answers after 20 s (under its 30 s timeout): time enough to open the UI and
    # the drawing on a loaded machine (8 s was not, in CI); then the page follows the run
    await stack.fault("shipping", op="do", match=key, mode="slow", delay=20.0, times=1)
    queue = f"drawn-{key}"
    with drawing_server(stack.address, "--no-auth") as url:
        plugin = SagaloomPlugin(services=stack.services, drawings_url=url)
        try:
            client = await Client.connect(stack.address, plugins=[plugin])
            async with (
                Worker(client, task_queue=queue, workflows=[OrderSaga]),
                async_playwright() as playwright,
            ):
                handle = await start_saga(client, ORDER, order(key), task_queue=queue)
                browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
                page = await browser.new_page(viewport={"width": 1400, "height": 1000})
                run_page = (
                    f"{dev_server.ui_url}/namespaces/default/workflows/{quote(handle.id, safe='')}"
                )
                await page.goto(run_page)
                await page.get_by_role("tab", name="User Metadata").click()
                details = page.frame_locator("iframe").last
                link = details.get_by_role("link", name="See this run drawn on its graph")
                await link.wait_for(timeout=20_000)
                assert await link.get_attribute("href") == (
                    f"{url}/sagas/{quote(handle.id, safe='')}/graph"
                )
                async with page.expect_popup() as opened:  # the link opens a tab of its own
                    await link.click()
                page = await opened.value
                shipment = page.locator('g[data-step="create-shipment"]')
                await shipment.wait_for(timeout=20_000)
                assert await shipment.get_attribute("class") == "step running"
                reserve = page.locator('g[data-step="reserve-stock"]')
                assert await reserve.get_attribute("class") == "step done"
                # the page follows the run: once it completes, the step is painted done
                assert (await outcome(handle)).status is SagaStatus.COMPLETED
                done = page.locator('g[data-step="create-shipment"][class="step done"]')
                await done.wait_for(timeout=60_000)
                await page.screenshot(path=str(ROOT / "test-artifacts" / "drawing-from-ui.png"))
                await browser.close()
        finally:
            LINKS.drawings = None  # the link is this process's setting: leave none behind


if __name__ == "__main__":
    GOLDEN.mkdir(parents=True, exist_ok=True)
    for old in GOLDEN.glob("*.mmd"):
        old.unlink()
    for file, text in drawings().items():
        (GOLDEN / file).write_text(text)
    print(f"wrote {len(drawings())} drawings to {GOLDEN.relative_to(ROOT)}")
