"""Undo order on graphs with steps skipped by ``when=``, checked against an independent model.

The rules (docs/sagas.md): started steps are compensated in reverse topological order — a
step's compensation runs only after the compensations of every started step that depends on
it, directly or through others — and a skipped step is never run and never compensated. The
model here reads each shape's ``after`` lists itself (not the engine's ``graph.descendants``,
which is the code under test), so a skipped step between two that ran is still "in between":
the later one is undone first. Each case runs on the dev server, one undo at a time and in
parallel; the order is read from the participant's own clock.
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections import Counter
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from temporalio.client import Client

from sagaloom import SagaStatus
from sagaloom.client import outcome, start_saga
from tests._scripted import CALLS, ENDED, STARTED
from tests._undo_sagas import SHAPES, UNDO_SAGAS, UNDO_WORKFLOWS
from tests.conftest import ScriptedWorker

pytestmark = pytest.mark.integration
QUEUE = "undo-order"


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def client(scripted_worker: ScriptedWorker, temporal: Client) -> AsyncIterator[Client]:
    async with scripted_worker(QUEUE, UNDO_WORKFLOWS):
        yield temporal


def depends_on(shape: str) -> dict[str, tuple[str, ...]]:
    """Each step's direct dependencies, as the definition states them."""
    names = [name for name, _ in SHAPES[shape]]
    return {
        name: tuple(after) if after is not None else tuple(names[max(i - 1, 0) : i])
        for i, (name, after) in enumerate(SHAPES[shape])
    }


def later_than(shape: str) -> dict[str, set[str]]:
    """Every step that depends on each step, through any chain of dependencies."""
    deps = depends_on(shape)
    found: dict[str, set[str]] = {name: set() for name in deps}
    for name in deps:
        todo = list(deps[name])
        while todo:  # walk up from ``name``: each ancestor has ``name`` later than it
            ancestor = todo.pop()
            if name not in found[ancestor]:
                found[ancestor].add(name)
                todo += deps[ancestor]
    return found


def cases() -> list[tuple[str, list[str], str, str]]:
    """(shape, skipped, failing step, how it fails): a skipped step between two that run."""
    chosen = []
    for shape in SHAPES:
        later = later_than(shape)
        names = list(later)
        between = [m for m in names if later[m] and any(m in later[a] for a in names)]
        last = names[-1]
        chosen += [(shape, [m], last, "reject") for m in between if m != last]
        # an unknown outcome in the middle (undone too), another step skipped
        middle = next(n for n in names if n not in (between[0], last) and later[n])
        chosen.append((shape, [between[0]], middle, "unavailable"))
    return chosen


CASES = cases()


def times(run: str, path: str) -> tuple[float, float]:
    [start] = [t for p, t in STARTED[run] if p == path]
    [end] = [t for p, t in ENDED[run] if p == path]
    return start, end


@pytest.mark.parametrize("parallel", [False, True], ids=["one-at-a-time", "parallel"])
async def test_undo_order_follows_the_dependencies_through_skipped_steps(
    client: Client, parallel: bool
) -> None:
    assert len(CASES) >= 12
    runs = {uuid.uuid4().hex[:10]: case for case in CASES}
    handles = [
        await start_saga(
            client,
            UNDO_SAGAS[(shape, parallel)],
            {"run": run, "skip": skip, "fail": fail, "fail_how": how},
            task_queue=QUEUE,
        )
        for run, (shape, skip, fail, how) in runs.items()
    ]
    results = await asyncio.gather(*(outcome(h) for h in handles))
    assert [r.status for r in results] == [SagaStatus.COMPENSATED] * len(runs)

    for run, (shape, skip, fail, how) in runs.items():
        where = f"{shape} skip={skip} fail={fail}:{how} parallel={parallel}"
        later = later_than(shape)
        paths = [path for path, _ in CALLS[run]]
        called = {p.split("/")[2] for p in paths if not p.endswith("/undo")}
        undone = Counter(p.split("/")[2] for p in paths if p.endswith("/undo"))
        assert not (called | set(undone)) & set(skip), f"{where}: a skipped step ran"
        assert not (called | set(undone)) & later[fail], f"{where}: ran after the failure"
        refused = {fail} if how == "reject" else set()
        assert set(undone) >= called - refused, f"{where}: left undone"
        assert not set(undone) & refused, f"{where}: a refused step was undone"
        assert set(undone.values()) <= {1}, f"{where}: undone twice {undone}"
        for first in undone:
            for then in later[first] & set(undone):
                # ``then`` depends on ``first``: it is undone, fully, before ``first`` starts
                then_end = times(run, f"/s/{then}/undo")[1]
                first_start = times(run, f"/s/{first}/undo")[0]
                assert then_end <= first_start, f"{where}: {first} undone before {then}"
        if not parallel:
            spans = sorted(times(run, f"/s/{name}/undo") for name in undone)
            for (_, end), (start, _) in itertools.pairwise(spans):
                assert end <= start, f"{where}: two undos at once"
