"""The ``on_failure`` policy as a table: docs/operating.md's table says which failures hold.

The expectation is the docs' table (each row a policy, each column a kind of failure), read
from the page; the engine's pure rule (``sagaloom._saga._holding.holds``) must say the same for
every kind, and never hold a child saga's failure, a deadline or a cancellation.
"""

from __future__ import annotations

import re
from typing import get_args

from sagaloom._saga._holding import FailureKind, OnFailure, holds, merge_patch, new_key_on_redrive
from tests._helpers import ROOT

REFUSAL = ("refused",)
UNEXPECTED = ("unavailable", "timeout", "unknown", "bug")
NEVER = ("child", "deadline", "cancelled")


def docs_table() -> dict[str, tuple[bool, bool]]:
    """Policy -> (a refusal holds, an unexpected failure holds), from docs/operating.md."""
    text = (ROOT / "docs" / "operating.md").read_text()
    section = text.split("## Incidents: hold, fix, redrive", 1)[1]
    rows = [line for line in section.splitlines() if line.startswith('| `"')]
    table = {}
    for row in rows:
        row = re.sub(r"<!--.*?-->", "", row).strip()
        policy, refusal, unexpected = (c.strip() for c in row.strip("|").split("|"))
        table[policy.split('"')[1]] = ("holds" in refusal, "holds" in unexpected)
    return table


def test_the_policy_holds_what_the_docs_table_says_for_every_kind() -> None:
    table = docs_table()
    assert set(table) == set(get_args(OnFailure))
    kinds: tuple[FailureKind, ...] = get_args(FailureKind)
    assert set(kinds) == {*REFUSAL, *UNEXPECTED, *NEVER}
    for policy, (refusal, unexpected) in table.items():
        for kind in REFUSAL:
            assert holds(policy, kind) is refusal, (policy, kind)  # type: ignore[arg-type]
        for kind in UNEXPECTED:
            assert holds(policy, kind) is unexpected, (policy, kind)  # type: ignore[arg-type]
        for kind in NEVER:
            assert not holds(policy, kind), (policy, kind)  # type: ignore[arg-type]


def test_only_a_refusal_gets_a_new_key_on_redrive() -> None:
    """docs/participants.md, "Redrives and keys"."""
    for kind in get_args(FailureKind):
        for changed in (False, True):
            assert new_key_on_redrive(kind, changed=changed) is (kind == "refused")


def test_a_request_patch_is_a_json_merge_patch() -> None:
    """RFC 7396's own examples (section 3)."""
    assert merge_patch({"a": "b"}, {"a": "c"}) == {"a": "c"}
    assert merge_patch({"a": "b"}, {"b": "c"}) == {"a": "b", "b": "c"}
    assert merge_patch({"a": "b"}, {"a": None}) == {}
    assert merge_patch({"a": "b", "b": "c"}, {"a": None}) == {"b": "c"}
    assert merge_patch({"a": ["b"]}, {"a": "c"}) == {"a": "c"}
    assert merge_patch({"a": "c"}, {"a": ["b"]}) == {"a": ["b"]}
    assert merge_patch({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}) == {"a": {"b": "d"}}
    assert merge_patch({"a": [{"b": "c"}]}, {"a": [1]}) == {"a": [1]}
    assert merge_patch(["a", "b"], ["c", "d"]) == ["c", "d"]
    assert merge_patch({"a": "b"}, ["c"]) == ["c"]
    assert merge_patch({"a": "foo"}, None) is None
    assert merge_patch({"a": "foo"}, "bar") == "bar"
    assert merge_patch({"e": None}, {"a": 1}) == {"e": None, "a": 1}
    assert merge_patch([1, 2], {"a": "b", "c": None}) == {"a": "b"}
    assert merge_patch({}, {"a": {"bb": {"ccc": None}}}) == {"a": {"bb": {}}}
