"""The participant toolkit's inbox, on SQLite and on a real PostgreSQL (started by the tests).

Each test keeps a business table beside the inbox, in one database, and checks what a payment
service's team would: the effect once, the answer replayed byte for byte, nothing kept of a
rolled-back transaction, the tombstone refusing a late forward call.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
import pytest_asyncio
from sqlalchemy import Column, Integer, MetaData, String, Table, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from sagaloom.service import Answer, Inbox, Refused, key_problem, sqlite_engine
from tests._postgres import Postgres, engine_of

pytestmark = pytest.mark.integration  # a real PostgreSQL (and processes) per module


@pytest_asyncio.fixture(params=["sqlite", "postgresql"], loop_scope="session")
async def engine(
    request: pytest.FixtureRequest, tmp_path: Path, postgres: Postgres
) -> AsyncIterator[AsyncEngine]:
    made = engine_of(request.param, tmp_path, postgres, pool_size=25)
    yield made
    await made.dispose()


class Shop:
    """A payment service's table and its handlers, beside the inbox."""

    def __init__(self, engine: AsyncEngine) -> None:
        name = f"t{uuid.uuid4().hex[:8]}"
        self.inbox = Inbox(engine, table=f"inbox_{name}")
        self.metadata = MetaData()
        self.payments = Table(  # no unique order id: a second apply would show
            f"payments_{name}",
            self.metadata,
            Column("id", Integer, primary_key=True, autoincrement=True),
            Column("order_id", String(64), nullable=False),
            Column("cents", Integer, nullable=False),
            Column("status", String(16), nullable=False),
        )
        self.engine = engine
        self.calls = 0
        self.pause = 0.0

    async def create(self) -> Shop:
        await self.inbox.create_tables()
        async with self.engine.begin() as connection:
            await connection.run_sync(self.metadata.create_all)
        return self

    async def charge(self, tx: AsyncSession, order: str, cents: int = 100) -> Answer:
        self.calls += 1
        await tx.execute(insert(self.payments).values(order_id=order, cents=cents, status="held"))
        if self.pause:
            await asyncio.sleep(self.pause)
        if cents > 10_000:
            raise Refused(f"{cents} cents is over the limit")
        return Answer.json({"id": f"ch-{order}", "cents": cents}, 201)

    async def refund(self, tx: AsyncSession, order: str, done: Answer) -> Answer:
        self.calls += 1
        await tx.execute(
            update(self.payments).where(self.payments.c.order_id == order).values(status="refunded")
        )
        return Answer.json({"refunded": done.data()["id"]})

    async def rows(self) -> dict[str, str]:
        async with self.engine.connect() as connection:
            found = (await connection.execute(select(self.payments))).all()
        orders = [row.order_id for row in found]
        assert len(orders) == len(set(orders)), f"applied twice: {sorted(orders)}"
        return {row.order_id: row.status for row in found}

    async def inbox_rows(self) -> int:
        async with self.engine.connect() as connection:
            return (
                await connection.execute(select(func.count()).select_from(self.inbox.table))
            ).scalar_one()


async def test_a_repeated_key_gets_the_first_answer_byte_for_byte_without_the_handler(
    engine: AsyncEngine,
) -> None:
    shop = await Shop(engine).create()
    first = await shop.inbox.forward("saga-1:charge", lambda tx: shop.charge(tx, "o1"))
    again = await shop.inbox.forward("saga-1:charge", lambda tx: shop.charge(tx, "o1", 999))
    assert (again.status, again.body, dict(again.headers)) == (
        first.status,
        first.body,
        dict(first.headers),
    )
    assert first.status == 201 and first.data() == {"id": "ch-o1", "cents": 100}
    assert shop.calls == 1 and await shop.rows() == {"o1": "held"}


async def test_concurrent_calls_with_one_key_apply_once(engine: AsyncEngine) -> None:
    shop = await Shop(engine).create()
    shop.pause = 0.05  # the first holds its transaction open while the others arrive
    answers = await asyncio.gather(
        *(shop.inbox.forward("saga-2:charge", lambda tx: shop.charge(tx, "o2")) for _ in range(20))
    )
    assert {a.body for a in answers} == {answers[0].body} and answers[0].status == 201
    assert shop.calls == 1 and await shop.rows() == {"o2": "held"}


async def test_a_compensation_before_its_forward_call_leaves_a_tombstone_that_refuses_it(
    engine: AsyncEngine,
) -> None:
    shop = await Shop(engine).create()
    undo = await shop.inbox.compensate(
        "saga-3:charge:compensate", lambda tx, done: shop.refund(tx, "o3", done),
        undoes="saga-3:charge",
    )  # fmt: skip
    assert undo.ok and undo.data() == {"undone": False, "reason": "never arrived"}
    late = await shop.inbox.forward("saga-3:charge", lambda tx: shop.charge(tx, "o3"))
    assert late.status == 409 and "compensated before it arrived" in late.body.decode()
    assert shop.calls == 0 and await shop.rows() == {}  # neither handler ran: no effect


async def test_a_compensation_undoes_what_its_forward_call_did_once(engine: AsyncEngine) -> None:
    shop = await Shop(engine).create()
    await shop.inbox.forward("saga-4:charge", lambda tx: shop.charge(tx, "o4"))
    for _ in range(3):
        undo = await shop.inbox.compensate(
            "saga-4:charge:compensate", lambda tx, done: shop.refund(tx, "o4", done),
            undoes="saga-4:charge",
        )  # fmt: skip
        assert undo.data() == {"refunded": "ch-o4"}
    assert shop.calls == 2 and await shop.rows() == {"o4": "refunded"}


async def test_a_failed_handler_keeps_nothing_and_a_retry_runs_it_again(
    engine: AsyncEngine,
) -> None:
    shop = await Shop(engine).create()

    async def crash(tx: AsyncSession) -> Answer:
        await shop.charge(tx, "o5")
        raise RuntimeError("the card network hung up")

    with pytest.raises(RuntimeError):
        await shop.inbox.forward("saga-5:charge", crash)
    assert await shop.rows() == {} and await shop.inbox_rows() == 0  # rolled back, key too

    async def busy(tx: AsyncSession) -> Answer:
        await shop.charge(tx, "o5")
        return Answer.json({"error": "the card network is busy"}, 503)

    assert (await shop.inbox.forward("saga-5:charge", busy)).status == 503
    assert await shop.rows() == {} and await shop.inbox_rows() == 0  # a 5xx: nothing kept
    retried = await shop.inbox.forward("saga-5:charge", lambda tx: shop.charge(tx, "o5"))
    assert retried.status == 201 and await shop.rows() == {"o5": "held"}


async def test_a_refusal_is_kept_and_its_writes_are_not(engine: AsyncEngine) -> None:
    shop = await Shop(engine).create()
    refused = await shop.inbox.forward("saga-6:charge", lambda tx: shop.charge(tx, "o6", 50_000))
    assert refused.status == 422 and refused.data() == {"error": "50000 cents is over the limit"}
    assert await shop.rows() == {}  # its insert rolled back
    again = await shop.inbox.forward("saga-6:charge", lambda tx: shop.charge(tx, "o6"))
    assert again.body == refused.body and shop.calls == 1  # the same no, without the handler
    undo = await shop.inbox.compensate(
        "saga-6:charge:compensate", lambda tx, done: shop.refund(tx, "o6", done),
        undoes="saga-6:charge",
    )  # fmt: skip
    assert undo.data() == {"undone": False, "reason": "nothing was done"} and shop.calls == 1


async def test_the_embedded_sqlite_engine_applies_waiting_commands_in_arrival_order(
    tmp_path: Path,
) -> None:
    """One command holds the database; eight arrive meanwhile, one by one. When it commits,
    they are applied in the order they arrived — not in the order SQLite's busy handler
    happens to wake them (several connections polling for the lock), which under a burst let
    a command wait past its caller's patience while later ones went through."""
    engine = sqlite_engine(tmp_path / "fifo.sqlite3")
    shop = await Shop(engine).create()
    for round_ in range(3):
        applied = await _arrivals(shop, f"r{round_}")
        assert applied == list(range(1, 9)), f"round {round_}: applied in order {applied}"
    await engine.dispose()


async def _arrivals(shop: Shop, run: str) -> list[int]:
    """Hold the database with one command while eight arrive; the order they were applied in."""
    applied: list[int] = []
    gate = asyncio.Event()

    async def holding(tx: AsyncSession) -> Answer:
        answer = await shop.charge(tx, f"{run}-first")
        await gate.wait()  # the transaction stays open (and holds the write lock)
        return answer

    def arriving(n: int) -> Callable[[AsyncSession], Awaitable[Answer]]:
        async def handler(tx: AsyncSession) -> Answer:
            applied.append(n)
            return await shop.charge(tx, f"{run}-{n}")

        return handler

    first = asyncio.create_task(shop.inbox.forward(f"k-{run}-0", holding))
    await asyncio.sleep(0.1)
    later = []
    for n in range(1, 9):
        later.append(asyncio.create_task(shop.inbox.forward(f"k-{run}-{n}", arriving(n))))
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.5)  # every one of them waits now
    gate.set()
    answers = await asyncio.gather(first, *later)
    assert [a.status for a in answers] == [201] * 9
    return applied


async def test_a_forward_call_and_its_compensation_racing_never_leave_an_effect_behind(
    engine: AsyncEngine,
) -> None:
    """Whichever commits first, the end is the same: nothing held."""
    shop = await Shop(engine).create()
    rng = random.Random(3)

    async def slow_charge(tx: AsyncSession, order: str) -> Answer:
        await asyncio.sleep(rng.random() * 0.03)
        return await shop.charge(tx, order)

    for n in range(15):
        key, order = f"saga-r{n}:charge", f"r{n}"

        async def forward(key: str = key, order: str = order) -> Answer:
            await asyncio.sleep(rng.random() * 0.02)
            return await shop.inbox.forward(key, lambda tx: slow_charge(tx, order))

        async def undo(key: str = key, order: str = order) -> Answer:
            await asyncio.sleep(rng.random() * 0.02)
            return await shop.inbox.compensate(
                f"{key}:compensate", lambda tx, done: shop.refund(tx, order, done), undoes=key
            )

        did, undid = await asyncio.gather(forward(), undo())
        assert undid.ok
        assert did.status in (201, 409)
        held = (await shop.rows()).get(order)
        assert held in (None, "refunded"), (n, did.status, undid.data(), held)


@pytest.mark.parametrize(
    ("key", "problem"),
    [
        (None, "missing"),
        ("", "missing"),
        ("k" * 600, "longer than 512"),
        ("saga:step\n", "printable ASCII"),
        ("saga:stép", "printable ASCII"),
        (" saga:step", "printable ASCII"),
    ],
)
def test_a_malformed_key_is_named(key: str | None, problem: str) -> None:
    found = key_problem(key)
    assert found is not None and problem in found
    assert key_problem("OrderSaga-o-1:charge-payment:compensate") is None
