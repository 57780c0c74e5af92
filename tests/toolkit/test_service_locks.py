"""Semantic locks (the toolkit) and the saga-ended notice (the engine): the anomaly they prevent.

A bank built on the toolkit (``tests/_toolkit_bank.py``, uvicorn in its own process) holds an
account at 100. A transfer debits 80, holds, then its other leg is refused and the debit is
refunded: for a while it is half done. A payment of 50 from the same account, started meanwhile:

* without locks, it reads the half-done balance (20) and is refused — for a debit that never
  stood (the saga literature's "dirty read");
* with locks, it waits (429, retried) until the transfer's refund releases the account, then
  goes through.

Locks are also released when the owning saga completes (the engine's notice), including when
the bank was down as the saga ended.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sqlite3
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from temporalio.client import Client, WorkflowHandle
from temporalio.worker import Replayer, Worker

from sagaloom import SagaState, SagaStatus, StepStatus
from sagaloom.client import outcome, start_saga
from sagaloom.participants import Breakers
from sagaloom.server import free_port
from sagaloom.worker import SagaloomPlugin
from tests._helpers import serve_asgi
from tests._toolkit_sagas import PAYMENT, SAGAS, TRANSFER

pytestmark = pytest.mark.integration


class Bank:
    """The toolkit bank in a process of its own, on a database and port that outlive it."""

    def __init__(self, folder: Path, *, locks: bool) -> None:
        self.folder, self.locks, self.port = folder, locks, free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Bank:
        env = {"BANK_DB": str(self.folder / "bank.db"), "BANK_LOCKS": "on" if self.locks else "off"}
        self.process = serve_asgi("tests._toolkit_bank:app", self.folder, env, self.port)[0]
        return self

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        with sqlite3.connect(self.folder / "bank.db") as db:
            return db.execute(sql).fetchall()

    def balance(self, account: str) -> int:
        return int(self.query(f"SELECT cents FROM accounts WHERE id = '{account}'")[0][0])

    def held(self) -> list[tuple[Any, ...]]:
        return self.query("SELECT resource, saga_id FROM sagaloom_locks")


@pytest.fixture(params=["locks", "no-locks"])
def bank(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Bank]:
    running = Bank(tmp_path, locks=request.param == "locks").start()
    yield running
    running.kill()


@pytest.fixture
def locking_bank(tmp_path: Path) -> Iterator[Bank]:
    running = Bank(tmp_path, locks=True).start()
    yield running
    running.kill()


@contextlib.asynccontextmanager
async def worker(temporal: Client, bank: Bank) -> AsyncIterator[str]:
    name = f"locks-{uuid.uuid4().hex[:6]}"
    plugin = SagaloomPlugin(services={"bank": bank.url}, breakers=Breakers(None))
    async with Worker(temporal, task_queue=name, workflows=SAGAS, plugins=[plugin]):
        yield name


@pytest_asyncio.fixture(loop_scope="session")
async def queue(temporal: Client, bank: Bank) -> AsyncIterator[str]:
    async with worker(temporal, bank) as name:
        yield name


@pytest_asyncio.fixture(loop_scope="session")
async def locking_queue(temporal: Client, locking_bank: Bank) -> AsyncIterator[str]:
    async with worker(temporal, locking_bank) as name:
        yield name


async def step_done(handle: WorkflowHandle[Any, Any], step: str, within: float = 20) -> None:
    deadline = time.monotonic() + within
    while True:
        state = await handle.query("saga_state", result_type=SagaState)
        if next(s for s in state.steps if s.name == step).status is StepStatus.DONE:
            return
        assert time.monotonic() < deadline, state
        await asyncio.sleep(0.1)


async def test_a_payment_never_decides_on_a_transfers_half_done_debit(
    temporal: Client, queue: str, bank: Bank
) -> None:
    account = f"acct-{uuid.uuid4().hex[:6]}"
    transfer = await start_saga(
        temporal, TRANSFER, {"account": account, "cents": 80, "hold_seconds": 2},
        task_queue=queue,
    )  # fmt: skip
    await step_done(transfer, "debit")  # half done: 20 left until its refund
    payment = await start_saga(
        temporal, PAYMENT, {"account": account, "cents": 50}, task_queue=queue
    )
    done = await asyncio.wait_for(outcome(transfer), 60)
    paid = await asyncio.wait_for(outcome(payment), 60)
    assert done.status is SagaStatus.COMPENSATED  # its other leg was refused: refunded
    if bank.locks:
        assert paid.status is SagaStatus.COMPLETED  # waited for the account, then paid
        assert bank.balance(account) == 50
        for _ in range(50):  # the payment's own lock goes with the engine's notice
            if not bank.held():
                break
            await asyncio.sleep(0.1)
        assert bank.held() == []
    else:  # the anomaly: refused on a balance that never stood
        assert paid.status is SagaStatus.COMPENSATED
        assert paid.report is not None and "insufficient funds: 20 left" in (
            paid.report.error or ""
        )
        assert bank.balance(account) == 100


async def test_a_completed_sagas_locks_are_released_even_if_the_bank_was_down_then(
    temporal: Client, locking_queue: str, locking_bank: Bank
) -> None:
    queue, bank = locking_queue, locking_bank
    account = f"acct-{uuid.uuid4().hex[:6]}"
    payment = await start_saga(
        temporal, PAYMENT, {"account": account, "cents": 30, "hold_seconds": 1.5},
        task_queue=queue,
    )  # fmt: skip
    await step_done(payment, "debit")
    assert [r[0] for r in bank.held()] == [f"account:{account}"]
    bank.kill()  # down as the saga ends: the notice waits for it
    assert (await asyncio.wait_for(outcome(payment), 30)).status is SagaStatus.COMPLETED
    await asyncio.sleep(2)
    assert [r[0] for r in bank.held()] == [f"account:{account}"]  # nobody could tell it yet
    bank.start()
    for _ in range(100):  # the notice's retries reach it (back-off from 1 s)
        if not bank.held():
            break
        await asyncio.sleep(0.2)
    assert bank.held() == []
    notice = temporal.get_workflow_handle(f"{payment.id}:sagaloom-ended")
    assert await notice.result() == []  # every service told
    next_payment = await start_saga(
        temporal, PAYMENT, {"account": account, "cents": 30}, task_queue=queue
    )
    assert (await asyncio.wait_for(outcome(next_payment), 30)).status is SagaStatus.COMPLETED
    assert bank.balance(account) == 40
    # the new code path replays: a saga that sent the notice, and the notice
    replayer = Replayer(workflows=SAGAS, plugins=[SagaloomPlugin(services={})])
    for history in (await payment.fetch_history(), await notice.fetch_history()):
        await replayer.replay_workflow(history)
