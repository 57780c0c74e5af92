"""The documentation a newcomer reads: short README, every code block tested or an excerpt."""

from __future__ import annotations

import ast
import re
import textwrap
from pathlib import Path

import pytest

from tests._helpers import ROOT

FENCE = re.compile(r"^```python(?P<info>[^\n]*)\n(?P<code>.*?)^```", re.S | re.M)
RUN = re.compile(r"# file: (\S+)\n")
PAGES = sorted([ROOT / "README.md", ROOT / "CONTRIBUTING.md", *(ROOT / "docs").rglob("*.md")])


def blocks(page: Path) -> list[tuple[str, str]]:
    return [(m["info"].strip(), m["code"]) for m in FENCE.finditer(page.read_text())]


def test_the_readme_is_a_page_not_a_manual() -> None:
    """Two commands, one saga, one participant, where to read on."""
    assert len((ROOT / "README.md").read_text().splitlines()) <= 150  # CONTRIBUTING.md says so


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_python_block_runs_in_a_test_or_says_it_is_an_excerpt(page: Path) -> None:
    for info, code in blocks(page):
        run = RUN.match(code)
        if run:  # run by tests/ops/test_quickstart.py, which takes the files from the quick start
            assert page.name in ("quickstart.md", "README.md"), (page, run[1])
            continue
        if code.startswith("--8<-- "):  # a repository file, included whole by the docs build
            assert info == f'title="{code.split(chr(34))[1]}"', (page, info)
            assert (ROOT / code.split('"')[1]).is_file(), (page, code)
            continue
        shown = re.fullmatch(r'title="([\w/]+\.py)"', info)
        if shown and shown[1] != "excerpt":  # a repository file shown whole: byte for byte
            assert code == (ROOT / shown[1]).read_text(), f"{page}: {shown[1]} differs"
            continue
        assert info == 'title="excerpt"', f"{page}: a block neither run nor marked:\n{code[:200]}"
        source = textwrap.dedent(code)
        flags = ast.PyCF_ONLY_AST | ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
        compile(source, f"{page.name} excerpt", "exec", flags=flags)  # at least valid Python


def test_the_readme_saga_is_the_quick_start_file_byte_for_byte() -> None:
    readme = {RUN.match(c)[1]: c for _, c in blocks(ROOT / "README.md") if RUN.match(c)}  # type: ignore[index]
    quick = {RUN.match(c)[1]: c for _, c in blocks(ROOT / "docs" / "quickstart.md") if RUN.match(c)}  # type: ignore[index]
    assert readme and set(readme) <= set(quick)
    for path, code in readme.items():
        assert code == quick[path], path


def test_the_docs_site_lists_every_page() -> None:
    nav = (ROOT / "mkdocs.yml").read_text()
    for page in (ROOT / "docs").rglob("*.md"):
        assert str(page.relative_to(ROOT / "docs")) in nav, page


FIGURE = re.compile(r"<!-- figure: ([\w-]+) -->(.*?)<!-- /figure -->")
MEASURED = re.compile(r"\d(?:[\d.,\u2013-]*\d)?\s?(?:x|\u00d7|%|ms|MiB|KB|sagas/s)(?!\w)")
"""A measured figure: a number with its unit (a ratio, a share, a time, a size, a rate)."""


def summary_figures() -> dict[str, str]:
    """The figures to quote, by id: benchmarks.md's summary table."""
    found = FIGURE.findall((ROOT / "docs" / "benchmarks.md").read_text())
    ids = [i for i, _ in found]
    assert len(ids) == len(set(ids)), "a figure id twice in the summary"
    return dict(found)


def test_every_summary_figure_is_in_the_run_log_it_comes_from() -> None:
    runs = (ROOT / "docs" / "benchmark-runs.md").read_text()
    figures = summary_figures()
    assert len(figures) >= 15
    missing = {i: text for i, text in figures.items() if text not in runs}
    assert not missing, f"summary figures the run log does not show: {missing}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_a_quoted_benchmark_figure_is_the_summarys(page: Path) -> None:
    """A figure quoted outside the benchmark pages is marked, and reads as the summary does."""
    if page.name in ("benchmarks.md", "benchmark-runs.md", "changelog.md", "CONTRIBUTING.md"):
        return
    figures = summary_figures()
    text = page.read_text()
    for figure_id, quoted in FIGURE.findall(text):
        assert figure_id in figures, f"{page.name}: no summary figure {figure_id!r}"
        assert quoted == figures[figure_id], (
            f"{page.name}: {figure_id} quoted as {quoted!r}, the summary says "
            f"{figures[figure_id]!r}"
        )
    # a sentence that cites the benchmarks may state a figure only through a marker
    for sentence in re.split(r"(?<=[.!?])\s+", re.sub(r"\s+", " ", text)):
        if "benchmark" in sentence.lower():
            bare = FIGURE.sub("", sentence)
            assert not MEASURED.search(bare), (
                f"{page.name}: a benchmark figure not taken from the summary: {sentence[:200]}"
            )


KINDS = ("Added", "Changed", "Deprecated", "Removed", "Fixed", "Security")


def test_the_changelog_has_a_dated_section_per_release_and_each_kind_once() -> None:
    """CHANGELOG.md's own rule: ``## [version] - YYYY-MM-DD`` (or Unreleased), each kind once."""
    text = (ROOT / "CHANGELOG.md").read_text()
    releases = re.split(r"^## ", text, flags=re.M)[1:]
    assert releases, "no release section"
    for section in releases:
        heading = section.splitlines()[0]
        assert heading == "[Unreleased]" or re.fullmatch(
            r"\[\d+\.\d+\.\d+\] - \d{4}-\d{2}-\d{2}", heading
        ), f"a release heading not [version] - date: {heading!r}"
        kinds = re.findall(r"^### (.+)$", section, flags=re.M)
        assert all(k in KINDS for k in kinds), f"{heading}: {kinds}"
        assert len(kinds) == len(set(kinds)), f"{heading}: a kind twice: {kinds}"
    assert len(re.findall(r"^## \[Unreleased\]$", text, flags=re.M)) <= 1


def test_the_demo_output_shown_is_the_demos_table() -> None:
    """quickstart.md shows a line per scenario of workers/demo.py; both pages say N/N."""
    from workers.demo import SCENARIOS

    n = len(SCENARIOS)
    quick = (ROOT / "docs" / "quickstart.md").read_text()
    shown = re.findall(r"^(?:COMPLETED|COMPENSATED) +(\w+)-90a195-([\w-]+) ", quick, re.M)
    assert sorted(shown) == sorted((s.saga.name, s.label) for s in SCENARIOS)
    for page in (quick, (ROOT / "README.md").read_text()):
        assert f"{n}/{n} sagas ended as expected" in page
