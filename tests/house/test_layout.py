"""The package's rooms and the arrows between them: each folder imports only from itself and below.

``python -m tests.house.test_layout`` prints the folder-level import graph (every import, including
those inside functions), the listing docs/contributing.md shows.
"""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "sagaloom"

# Bottom to top. A room may import from itself and from any room before it, never after.
LAYERS = (
    "_public",  # sagaloom/_public.py: how each public module's names carry that module's name
    "_wire",  # names histories, visibility and the broker hold; protocol; release line (pure)
    "_saga",  # the saga model and its pure decisions: definition, graph, schedule, rules (pure)
    "_config",  # the settings table (the environment is read through it, at the edges)
    "_encoding",  # the data converter and the encryption codec (never in workflow code)
    "_drawing",  # a saga's drawing from its definition, a run painted on it (pure, no I/O)
    "_ops",  # logging, metrics, telemetry, codec server, the HTTP server helper
    "storage",  # payloads over the threshold: NATS object store, S3, broker bodies, sweeper
    "_runtime",  # the workflow (sandbox-safe)
    "sagaloom",  # the package's face (__init__.py, converter.py, __main__.py)
    "participants",  # the caller side of a step: HTTP activity, idempotency, errors
    "service",  # the participant toolkit: inbox, HTTP endpoints (the other side of a step)
    "client",  # start, outcome, views, deployments, broker admin, reply intake
    "_broker",  # NATS: the worker's bus and consumers
    "worker",  # config, plugin, registry, reply endpoint, supervisor, worker process
    "server",  # the embedded default: dev server, nats-server, the dev stack
    "testing",  # saga_environment, ScriptedParticipant, FaultInjector
    "_cli",  # the saga command
)
PRODUCTION = LAYERS[: LAYERS.index("worker") + 1]
FACE = {"__init__", "__main__", "converter"}
"""The only modules at the package's root besides ``_public``: every other is in a room."""
SANDBOXED = ("_public", "_wire", "_saga", "_runtime")
"""The rooms workflow code imports: nothing in them does I/O, reads the clock or the
environment at import, or imports a module that does (checked below, room by room)."""


def room(module: str) -> str:
    """The room of a ``sagaloom...`` module name (a module at the root is the face's)."""
    parts = module.split(".")
    if len(parts) == 1:
        return "sagaloom"
    if len(parts) == 2 and (PACKAGE / f"{parts[1]}.py").exists():
        if parts[1] == "_public":
            return "_public"
        return "sagaloom" if parts[1] in FACE else f"loose module {module}"
    return parts[1]


def _module_of(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def arrows() -> dict[tuple[str, str], set[str]]:
    """``(from room, to room) -> {'module -> module', ...}`` for every sagaloom import."""
    found: dict[tuple[str, str], set[str]] = defaultdict(set)
    for path in sorted(PACKAGE.rglob("*.py")):
        here = _module_of(path)
        if here == "sagaloom.__main__":
            continue
        for target in imports(path):
            if target.startswith("sagaloom.") or target == "sagaloom":
                found[(room(here), room(target))].add(f"{here} -> {target}")
    return found


def imports(path: Path) -> list[str]:
    """Every module ``path`` imports (absolute imports, inside functions too)."""
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
        elif isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
    return names


def test_every_module_is_in_a_room() -> None:
    rooms = {room(_module_of(p)) for p in PACKAGE.rglob("*.py")}
    assert rooms <= set(LAYERS), rooms - set(LAYERS)


def test_no_arrow_runs_back_up() -> None:
    back = {
        pair: sorted(found)
        for pair, found in arrows().items()
        if LAYERS.index(pair[1]) > LAYERS.index(pair[0])
    }
    assert back == {}


def test_production_never_imports_the_embedded_servers() -> None:
    bad = {pair: sorted(f) for pair, f in arrows().items() if pair[0] in PRODUCTION}
    bad = {pair: f for pair, f in bad.items() if pair[1] in ("server", "testing", "_cli")}
    assert bad == {}


def test_the_sandboxed_rooms_import_only_sandboxed_rooms_and_ops() -> None:
    for (source, target), found in arrows().items():
        if source in SANDBOXED:
            assert target in (*SANDBOXED, "_ops"), sorted(found)


SANDBOX_SAFE = {
    # the standard library's pure modules: no I/O, clock or randomness at import or in use
    # by this code (``secrets`` makes reply tokens on the worker's side, never in a workflow)
    *("__future__", "asyncio", "base64", "builtins", "collections", "contextlib", "dataclasses"),
    *("datetime", "enum", "functools", "hashlib", "hmac", "itertools", "json", "math", "re"),
    *("secrets", "sys", "types", "typing", "urllib", "zlib"),
    "pydantic",  # the models
    "temporalio",  # workflow, common, exceptions; worker for the interceptor's base classes
}
"""What a module of a sandboxed room may import from outside sagaloom (top-level names)."""


def test_every_module_of_a_sandboxed_room_imports_only_what_a_workflow_may() -> None:
    """Sandbox safety by folder: a module dropped into ``_wire/``, ``_saga/`` or ``_runtime/``
    that imports ``os``, ``time``, ``random``, ``socket``, ``httpx`` (or anything not listed)
    fails here, before a workflow imports it."""
    bad = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if room(_module_of(path)) not in SANDBOXED:
            continue
        for name in imports(path):
            top = name.split(".")[0]
            if top != "sagaloom" and top not in SANDBOX_SAFE:
                bad.append(f"{path.relative_to(PACKAGE.parent)}: import {name}")
    assert bad == []


def test_only_the_face_and_its_helper_stand_at_the_root() -> None:
    """Every module is in a room named for what it holds; the root keeps the public face."""
    loose = sorted(p.stem for p in PACKAGE.glob("*.py") if p.stem not in {*FACE, "_public"})
    assert loose == []


def listing() -> str:
    """The folder-level graph: each room, what it imports, and how many imports."""
    graph = arrows()
    lines = []
    for source in LAYERS:
        targets = sorted(
            ((t, len(f)) for (s, t), f in graph.items() if s == source and t != source),
            key=lambda item: LAYERS.index(item[0]),
        )
        shown = ", ".join(f"{t} ({n})" for t, n in targets) or "-"
        lines.append(f"{source:13} -> {shown}")
    return "\n".join(lines) + "\n"


def test_the_documented_graph_is_the_code() -> None:
    """docs/architecture.md shows the graph this module prints; a new arrow must be shown."""
    page = (PACKAGE.parent / "docs" / "architecture.md").read_text()
    assert f"```text\n{listing()}```" in page, "regenerate: python -m tests.house.test_layout"


def test_every_file_the_feature_table_names_exists() -> None:
    """docs/architecture.md's "By feature" table: a moved or renamed file fails here."""
    page = (PACKAGE.parent / "docs" / "architecture.md").read_text()
    section = page.split("## By feature", 1)[1].split("\n## ", 1)[0]
    rows = "\n".join(line for line in section.splitlines() if line.startswith("| "))
    named = re.findall(r"`([\w/]+\.py)`", rows)
    assert len(named) >= 40
    missing = [name for name in named if not (PACKAGE / name).is_file()]
    assert not missing, missing


def main() -> None:
    """Print the folder-level graph (docs/architecture.md shows it)."""
    print(listing(), end="")


if __name__ == "__main__":
    main()


# Tests use the public API; these test a private seam on purpose (the reason is the seam).
PRIVATE_SEAMS = {
    "tests/broker/test_intake.py": (
        "the one reply intake of HTTP and NATS, and the step-key contract"
    ),
    "tests/model/test_schedule.py": "the pure scheduling functions the runtime calls",
    "tests/runtime/test_runtime_rules.py": (
        "how the runtime words a failure (its one-line describe)"
    ),
    "tests/model/test_nesting_model.py": (
        "the pure nesting decisions, explored over every interleaving"
    ),
    "tests/house/test_contracts.py": "the generated contracts against the committed ones",
    "tests/broker/test_replies.py": "the reply endpoint and reply tokens, attacked directly",
    "tests/broker/test_broker.py": "the broker connection and reply tokens, attacked directly",
    "tests/toolkit/test_http_participant.py": (
        "the reply tokens of its commands, checked by another signer"
    ),
    "tests/payloads/test_security.py": "the codec server and the CLI's TLS flags",
    "tests/worker/test_observability.py": "the JSON log formatter",
    "tests/worker/test_tracing.py": "the tracing plugin the worker adds",
    "tests/ops/test_deploy.py": (
        "the worker's service check and the CLI's variables, against manifests"
    ),
    "tests/worker/test_config.py": (
        "the settings table, the CLI flags it generates, the CLI's UI file"
    ),
    "tests/_docs.py": "the settings table the docs are generated from",
    "tests/chaos.py": "the breaker's release signal, to count the sagas that waited in histories",
    "tests/runtime/test_fanout.py": "the fan-out's batch workflow, given by hand to a plain worker",
    "tests/runtime/test_fanout_show.py": (
        "the fan-out's batch workflow, given by hand to a plain worker"
    ),
    "tests/payloads/test_payloads.py": (
        "the fan-out's batch workflow by hand; the codec server in-process"
    ),
    "tests/model/test_holding.py": "the pure on_failure rule, checked against the docs' table",
    "tests/outages/test_limits_doc.py": "the limits' constants, which the limits page must state",
    "tests/house/test_docs_names.py": (
        "the CLI parser and the settings table, which the docs must match"
    ),
    "tests/model/test_pure_rules.py": "the pure fan-out, graph and error rules at their edges",
    "tests/worker/test_plugin.py": "the key shards' worker that the plugin runs beside, spied on",
    "tests/model/test_key_rules.py": "the pure rules of one exclusive key, early asks included",
    "tests/runtime/test_exclusive.py": "start_saga's early take, interrupted before the start",
    "tests/_broken_keys.py": "the HTTP participant's key function, broken on purpose for chaos",
    "tests/record_fanout.py": "the fan-out's batch workflow and a batch's id, to record histories",
    "tests/runtime/test_graphs.py": "the pure drawing of a saga and a run painted on it",
    "tests/release/test_replay.py": (
        "the build's version, set to a later one on the same release line"
    ),
    "tests/worker/test_purity.py": "the pure check of step builders, at its edges",
    "bench/readme.py": "the builders' check switched off, to measure the sandbox's re-import",
}
_PRIVATE = re.compile(
    r"^\s*(from|import) sagaloom(\.[a-z]+)*\._\w+|^\s*from sagaloom(\.[a-z]+)* import _", re.M
)


def test_tests_use_the_public_api_unless_they_test_a_private_seam() -> None:
    root = PACKAGE.parent
    found = set()
    for folder in ("tests", "bench", "workers", "services", "workflows", "activities"):
        for path in (root / folder).rglob("*.py"):
            if _PRIVATE.search(path.read_text()):
                found.add(str(path.relative_to(root)))
    found.discard("tests/house/test_layout.py")
    assert found <= set(PRIVATE_SEAMS), sorted(found - set(PRIVATE_SEAMS))
