"""docs/errors.md lists every failure type the engine raises (a new one without a row fails)."""

from __future__ import annotations

import re
import subprocess

from tests._helpers import ROOT

CONSTANTS = re.compile(r'^([A-Z_]+) = "([A-Z][A-Za-z]+)"$', re.M)


def raised_types() -> set[str]:
    """Every ``ApplicationError`` type the package raises: literal, or a named constant."""
    source = subprocess.run(
        ["git", "grep", "-h", "-A8", "ApplicationError(", "--", "sagaloom"],
        capture_output=True, text=True, cwd=ROOT, check=True,
    ).stdout  # fmt: skip
    source += "\n".join(p.read_text() for p in (ROOT / "sagaloom").rglob("_fanout.py"))
    constants = dict(
        CONSTANTS.findall("\n".join(p.read_text() for p in (ROOT / "sagaloom").rglob("*.py")))
    )
    found = set(re.findall(r'type="([A-Za-z]+)"', source))
    found |= {constants[n] for n in re.findall(r"type=([A-Z_]+)\b", source) if n in constants}
    found |= set(re.findall(r'_lost\(batch, err, "([A-Za-z]+)"\)', source))
    return found


def test_every_failure_type_the_engine_raises_has_a_row() -> None:
    page = (ROOT / "docs" / "errors.md").read_text()
    rows = set(re.findall(r"^\| `([A-Za-z]+)` \|", page, re.M))
    types = raised_types()
    assert len(types) >= 22  # read from the code (not a pattern that finds nothing)
    assert types - rows == set(), "failure types with no row in docs/errors.md"
