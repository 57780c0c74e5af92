"""The promise ledger (docs/guarantees.md) cannot drift from the docs, the tests or the mutations.

Every ``<!-- promise: ID -->`` marker in the docs has a ledger row, and every row a marker on the
page it names; each row's test exists, and its mutation exists in ``tests/mutations.py`` and runs
that test's file (``./run mutate`` then shows the test catching it).
"""

from __future__ import annotations

import re
from pathlib import Path

from tests._helpers import ROOT
from tests.mutations import MUTATIONS

MARKER = re.compile(r"<!-- promise: ([a-z0-9-]+) -->")
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def ledger() -> dict[str, tuple[str, str, str]]:
    """The ledger's rows: promise id -> (page, test, mutation)."""
    text = (ROOT / "docs" / "guarantees.md").read_text()
    table = text.split("<!-- ledger -->")[1].split("<!-- /ledger -->")[0]
    rows: dict[str, tuple[str, str, str]] = {}
    for line in table.strip().splitlines()[2:]:
        promise, page, test, mutation = (c.strip() for c in line.strip().strip("|").split("|"))
        assert promise not in rows, f"ledger: {promise} twice"
        rows[promise] = (page, test.strip("`"), mutation)
    return rows


def markers() -> dict[str, set[str]]:
    """Promise id -> the pages that mark it."""
    found: dict[str, set[str]] = {}
    for page in DOCS:
        for promise in MARKER.findall(page.read_text()):
            found.setdefault(promise, set()).add(str(page.relative_to(ROOT / "docs"))
                                                 if page.parent != ROOT else page.name)  # fmt: skip
    return found


def test_every_marked_promise_has_a_row_and_every_row_a_marker() -> None:
    rows, marked = ledger(), markers()
    assert set(marked) - set(rows) == set(), "promises marked in the docs without a ledger row"
    assert set(rows) - set(marked) == set(), "ledger rows whose promise no page marks"
    for promise, (page, _, _) in rows.items():
        assert page in marked[promise], f"{promise}: marked on {marked[promise]}, not {page}"


def test_every_row_names_a_test_that_exists_and_a_mutation_that_runs_it() -> None:
    by_promise = {m.promise: m for m in MUTATIONS}
    for promise, (_, test, mutation) in ledger().items():
        path, _, name = test.partition("::")
        source = Path(ROOT / path)
        assert source.is_file(), f"{promise}: no file {path}"
        assert re.search(rf"^(async )?def {re.escape(name)}\(", source.read_text(), re.M), (
            f"{promise}: no test {test}"
        )
        assert mutation in by_promise, f"{promise}: no mutation {mutation!r}"
        assert by_promise[mutation].tests[0] == path, (
            f"{promise}: mutation {mutation!r} runs {by_promise[mutation].tests}, not {path}"
        )
