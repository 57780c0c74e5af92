"""Every documented command, flag and variable exists (docs can't name what the code lacks).

The pages (README, docs/, deploy/README.md) are read for ``saga <command> ... --flag`` in code
and text, and for ``SAGALOOM_*`` variables; each command must be one of the ``saga`` parser's,
each flag one of that command's (or of ``saga`` itself), each variable a row of the settings
table (``sagaloom/_config/_settings.py``) or one the code reads by name (a broker stream's name,
which the pages give too, aside).
"""

from __future__ import annotations

import argparse
import re
import subprocess

from sagaloom._cli import parser
from sagaloom._config._settings import CLI_SETTINGS, SERVICE_PREFIX, WORKER_SETTINGS
from sagaloom._wire._protocol import COMMANDS_STREAM, DEAD_STREAM, EVENTS_STREAM, REPLIES_STREAM
from tests._helpers import ROOT

PAGES = [ROOT / "README.md", ROOT / "deploy" / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
COMMAND = re.compile(r"^(?:\$ |.*\bthen: |.*[;&|] )?saga ([a-z][a-z-]+)((?: +[^\s`|;)#]+)*)")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)
SPAN = re.compile(r"`([^`\n]+)`")


def code_of(text: str) -> list[str]:
    """The code in a page: fenced blocks' lines, and inline code spans."""
    blocks = [line for block in FENCE.findall(text) for line in block.splitlines()]
    return blocks + SPAN.findall(FENCE.sub("", text))


VARIABLE = re.compile(r"\bSAGALOOM_[A-Z0-9_<>]+")


def commands() -> dict[str, set[str]]:
    top = parser()
    sub = next(a for a in top._actions if isinstance(a, argparse._SubParsersAction))
    shared = {o for a in top._actions for o in a.option_strings}
    return {
        name: shared | {o for a in p._actions for o in a.option_strings}
        for name, p in sub.choices.items()
    }


def test_every_documented_command_and_flag_exists() -> None:
    known, wrong, seen = commands(), [], 0
    for page in PAGES:
        for line in code_of(page.read_text()):
            for found in COMMAND.finditer(line.strip()):
                name, rest, seen = found[1], found[2], seen + 1
                if name not in known:
                    wrong.append(f"{page.name}: saga {name} (no such command)")
                    continue
                for flag in re.findall(r"(?<![\w-])(--[a-z][a-z-]*)", rest):
                    if flag not in known[name]:
                        wrong.append(f"{page.name}: saga {name} {flag} (no such flag)")
    assert not wrong, "\n".join(sorted(set(wrong)))
    assert seen > 80  # the pages' commands were read (not a pattern that finds nothing)


READ = re.compile(
    r"""(?:environ(?:\.get)?\(|environ\[|getenv\(|env\.get\(|env\[)\s*f?["'](SAGALOOM_[A-Z0-9_]+)"""
)
"""A variable the code reads by name (``os.environ.get("SAGALOOM_X")``, ``env["SAGALOOM_X"]``)."""
STREAMS = {COMMANDS_STREAM, REPLIES_STREAM, EVENTS_STREAM, DEAD_STREAM}
"""Names of the broker's streams, which the pages name too (not variables)."""


def test_every_documented_variable_is_read_by_the_code() -> None:
    # a row of the settings table, or read by name in the engine, the services or the workers;
    # a mention elsewhere (a docstring, a test) does not count: a renamed variable must fail
    table = {s.env for s in (*WORKER_SETTINGS, *CLI_SETTINGS)}
    code = subprocess.run(
        ["git", "grep", "-hE", r"SAGALOOM_[A-Z0-9_]+", "--", "sagaloom", "services", "workers"],
        capture_output=True, text=True, cwd=ROOT, check=True,
    ).stdout  # fmt: skip
    read = set(READ.findall(code))
    wrong = []
    for page in PAGES:
        for name in set(VARIABLE.findall(page.read_text())):
            if name in table or name in read or name in STREAMS:
                continue
            if name.startswith(SERVICE_PREFIX):  # SAGALOOM_SERVICE_<NAME>[_TOKEN, ...]
                continue
            if name.endswith("_") and any(t.startswith(name) for t in table):
                continue  # a family: SAGALOOM_MAX_CONCURRENT_*
            wrong.append(f"{page.name}: {name}")
    assert not wrong, "\n".join(sorted(wrong))
