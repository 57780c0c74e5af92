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
        name = name.split("[", 1)[0]  # a parametrized test's id names its function
        source = Path(ROOT / path)
        assert source.is_file(), f"{promise}: no file {path}"
        assert re.search(rf"^(async )?def {re.escape(name)}\(", source.read_text(), re.M), (
            f"{promise}: no test {test}"
        )
        assert mutation in by_promise, f"{promise}: no mutation {mutation!r}"
        assert by_promise[mutation].tests[0] == path, (
            f"{promise}: mutation {mutation!r} runs {by_promise[mutation].tests}, not {path}"
        )


PROOF_PAGES = ("benchmarks.md", "benchmark-runs.md", "chaos.md", "mutations.md", "changelog.md",
               "contributing.md", "guarantees.md", "architecture.md", "cli.md")  # fmt: skip
"""Pages of figures, runs and notes (what they say was measured, not promised), and the CLI
reference generated from the parser (checked against it by tests/worker/test_config.py)."""
TRIGGER = re.compile(r"\b(never|always|at most|once|in order|until|only)\b", re.I)
NOT_PROMISES = (
    ("configuration.md", "# Workers and configuration **In your own Temporal project**"),
    ("configuration.md", "| variable | flag | default | meaning |"),
    ("event-driven.md", "The example `workflows/fulfilment.py` reserves stock over HTTP"),
    ("fanout.md", "`./run demo` runs it twice against the demo participants"),
    ("fanout.md", "- Items run as regular activities (never local)"),
    ("isolation.md", "Its steps commit one by one, so while it runs"),
    ("sagas.md", "## The sandbox, checked once Step builders (keys, bodies, paths"),
    ("upgrading.md", "## Behaviour changes, by release ### Unreleased - **Saga modules pass"),
    ("isolation.md", "A saga asks for a key through a local activity"),
    ("isolation.md", "A lone ask leaves at once."),
    ("isolation.md", "The ledger example (`activities/ledger.py`)"),
    ("operating.md", "# Operating sagas ## Start a saga"),
    ("operating.md", "### Per-service limits A service that must not get more"),
    ("operating.md", "`tests/outages/test_limits.py` sends the same burst"),
    ("operating.md", "**Metrics.** `saga worker --metrics-address"),
    ("quickstart.md", "# Quick start ## Two commands"),
    ("quickstart.md", "`./run demo` prints one line per saga"),
    ("quickstart.md", "**`SagaReport`**, what a finished saga says"),
    ("sagas.md", "Tested on the dev server with two builds of worker processes"),
    ("testing.md", "# Testing your sagas ## Test your own sagas"),
    ("toolkit.md", "## Replying later: the outbox A step with `reply_timeout=`"),
    ("toolkit.md", "A payment of 50 started meanwhile is **refused without locks**"),
    ("cloud.md", "# Connecting to Temporal Cloud Workers and clients connect the same way"),
    ("cloud.md", "Every sagaloom entry point — `sagaloom.client.connect()`"),
    ("cloud.md", "Search attributes and workflow ids are never encrypted"),
    ("errors.md", "## A step's failures | type | what happened"),
    ("errors.md", "| | `ItemsFailed` | more fan-out items failed"),
    ("limits.md", "## sagaloom | what | limit | where it is enforced"),
    ("limits.md", "## Temporal, underneath | what | limit"),
    ("upgrading.md", "# Upgrading and compatibility ## What sagaloom needs"),
    ("upgrading.md", "- **A business key runs once.**"),  # operating.md's, guarded there
    ("upgrading.md", "Then either **drain**"),
    ("upgrading.md", "* **A release that starts a new line**"),  # the policy; its effect is
    # the release-line promise below it
    ("upgrading.md", "| release | date | line | replays the runs of |"),
)
"""Sentences with a trigger word that promise nothing (instructions, examples, tables, a
description of a test), by their first words."""


def _sentences(text: str) -> list[str]:
    text = re.sub(r"```.*?```", "", text, flags=re.S)
    text = re.sub(r"<!-- (?!promise)[^>]*-->", "", text)
    return re.split(r"(?<=[.!?])\s+(?=[A-Z*`(|\[#-])", re.sub(r"\s+", " ", text))


def _unguarded() -> list[tuple[str, str]]:
    text = (ROOT / "docs" / "guarantees.md").read_text()
    listed = text.split("<!-- unguarded -->")[1].split("<!-- /unguarded -->")[0]
    found = []
    for line in listed.strip().splitlines():
        page, _, start = line.removeprefix("- ").partition(": ")
        found.append((page, re.sub(r"\s+", " ", start)))
    return found


def test_every_sentence_that_promises_is_in_the_ledger_or_said_to_be_unguarded() -> None:
    known = [*NOT_PROMISES, *_unguarded()]
    used: set[tuple[str, str]] = set()
    missing = []
    for page in sorted((ROOT / "docs").glob("*.md")):
        if page.name in PROOF_PAGES:
            continue
        for sentence in _sentences(page.read_text()):
            bare = re.sub(r"<!--.*?-->", "", sentence)
            if not TRIGGER.search(bare) or "<!-- promise:" in sentence:
                continue
            match = [k for k in known if k[0] == page.name and sentence.startswith(k[1])]
            if not match:
                missing.append(f"{page.name}: {sentence[:120]}")
            used.update(match)
    assert not missing, "sentences that promise, unclassified:\n" + "\n".join(missing)
    assert set(known) - used == set(), "classified sentences no page says any more"


def test_the_counts_the_pages_state_are_the_codes() -> None:
    """A count in the docs is generated or checked: the mutations' here."""
    page = (ROOT / "docs" / "guarantees.md").read_text()
    (said,) = re.findall(r"<!-- count: mutations -->(\d+)<!-- /count -->", page)
    assert int(said) == len(MUTATIONS)
