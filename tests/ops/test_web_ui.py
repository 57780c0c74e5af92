"""The Temporal Web UI, in headless Chromium: a compensated saga reads like the saga.

Needs Debian's ``chromium`` (``./run test`` installs it where it can); screenshots are saved to
``test-artifacts/``.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import quote

import pytest
import pytest_asyncio
from playwright.async_api import Browser, Page, async_playwright

from sagaloom import SagaStatus
from sagaloom.client import outcome, start_saga
from sagaloom.server import DevServer
from tests._helpers import ROOT, TASK_QUEUE, Stack, order
from workflows.order import ORDER

pytestmark = [pytest.mark.integration, pytest.mark.slow]
CHROMIUM = os.environ.get("SAGALOOM_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = ROOT / "test-artifacts"
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def chromium() -> str:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"no Chromium at {CHROMIUM}: apt-get install chromium (./run test does)")
    return CHROMIUM


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def browser(chromium: str) -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=chromium, args=FLAGS)
        yield launched
        await launched.close()


async def shot(page: Page, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    await page.screenshot(path=str(path))
    return path


async def test_compensated_saga_is_findable_and_readable_in_the_web_ui(
    stack: Stack, dev_server: DevServer, browser: Browser, key: str
) -> None:
    await stack.fault("shipping", op="do", match=key, mode="reject", status=422)
    handle = await start_saga(stack.client, ORDER, order(key), task_queue=TASK_QUEUE)
    assert (await outcome(handle)).status is SagaStatus.COMPENSATED
    ui = dev_server.ui_url
    page = await browser.new_page(viewport={"width": 1400, "height": 1000})

    # The list, filtered by the saga status search attribute.
    query = quote(f'SagaStatus="COMPENSATED" AND SagaKey="{key}"')
    await page.goto(f"{ui}/namespaces/default/workflows?query={query}")
    row = page.get_by_role("link", name=handle.id)
    await row.wait_for(timeout=20_000)
    assert await page.get_by_text("SagaStatus", exact=False).count() > 0
    await shot(page, "ui-list-compensated.png")

    # The run: failed as compensated, with a timeline that names steps and compensations.
    await row.click()
    await page.get_by_text("step 3/3 create-shipment").first.wait_for(timeout=20_000)
    body = await page.inner_text("body")
    assert "saga OrderSaga compensated: step create-shipment failed" in body
    for label in (
        "step 1/3 reserve-stock",
        "step 2/3 charge-payment",
        "step 3/3 create-shipment",
        "compensate 2/3 charge-payment",
        "compensate 1/3 reserve-stock",
    ):
        assert label in body, label
    assert "Traceback" not in body and 'stackTrace": "  File' not in body
    await shot(page, "ui-saga-compensated.png")

    # The live state through the Queries tab.
    await page.get_by_role("tab", name="Queries").click()
    await page.get_by_role("button", name="Run Query").click()
    await page.get_by_text('"compensated"').first.wait_for(timeout=20_000)
    state = await page.inner_text("main")
    assert '"failed_step": "create-shipment"' in state
    assert '"status": "COMPENSATED"' in state
    await shot(page, "ui-saga-query.png")
    await page.close()


async def test_a_running_saga_shows_its_live_step_table_in_the_web_ui(
    stack: Stack, dev_server: DevServer, browser: Browser, key: str
) -> None:
    await stack.fault("shipping", op="do", match=key, mode="slow", delay=15.0, times=1)
    handle = await start_saga(stack.client, ORDER, order(key), task_queue=TASK_QUEUE)
    page = await browser.new_page(viewport={"width": 1400, "height": 1000})
    await page.goto(f"{dev_server.ui_url}/namespaces/default/workflows/{quote(handle.id, safe='')}")
    # The current details: the saga's step table, rendered from its markdown.
    await page.get_by_role("tab", name="User Metadata").click()
    await page.get_by_text("Current Details").first.wait_for(timeout=20_000)
    # (the UI renders each markdown field in a sandboxed frame; the details are the second)
    details = page.frame_locator("iframe").last.locator("body")
    await details.get_by_text("create-shipment").wait_for(timeout=20_000)
    rows = await details.inner_text()
    # one step a line, its words apart (before: a table whose columns ran together)
    assert "reserve-stock — done · 1 try" in rows, rows
    assert "create-shipment — running" in rows, rows
    await shot(page, "ui-saga-live-details.png")
    await page.close()
    assert (await outcome(handle)).status is SagaStatus.COMPLETED
