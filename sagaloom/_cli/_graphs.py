"""``saga graph``: a saga's drawing, from its definition; ``saga show --graph``: a run on it."""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from sagaloom._cli._common import CliError, add_command, client, module_flag, modules
from sagaloom._drawing import FORMATS, drawing_of, paint, render
from sagaloom._saga._definition import Saga
from sagaloom._saga._model import SagaState
from sagaloom.client._views import read_saga
from sagaloom.worker._registry import find_saga, load_sagas

__all__ = ["drawer", "graph_flags", "painted", "register", "write_drawing"]


async def cmd_graph(args: argparse.Namespace) -> int:
    """Print (or write) a saga's drawing, read from its definition: no server needed."""
    saga = find_saga(args.saga, load_sagas(modules(args)))
    write_drawing(render(drawing_of(saga), args.format), args.output)
    return 0


def write_drawing(text: str, output: str | None) -> None:
    """To ``output`` (a file), or to standard output."""
    if output is None:
        print(text, end="")
        return
    try:
        Path(output).write_text(text)
    except OSError as err:
        raise CliError(f"--output {output}: {err.strerror or err}") from None
    print(f"wrote {output}")


def painted(run_id: str, state: SagaState, workflow_type: str, args: argparse.Namespace) -> str:
    """The run's drawing: its saga's graph (from ``--module``) with the run's state on it.

    Raises:
        CliError: the run is not a saga, or no module named defines its saga.
    """
    try:
        return _painted(load_sagas(modules(args)), run_id, state, workflow_type, args.format)
    except LookupError as err:
        raise CliError(str(err)) from None


def _painted(
    sagas: dict[str, Any], run_id: str, state: SagaState, workflow_type: str, fmt: str
) -> str:
    """``run_id``'s state painted on its saga's graph, in ``fmt``.

    Raises:
        LookupError: no saga of ``sagas`` is the run's (it names the ones known).
    """
    name = state.saga or workflow_type
    if name not in sagas:
        known = ", ".join(sorted(sagas)) or "none (name the module: --module mypackage.sagas)"
        raise LookupError(
            f"run {run_id!r} is a {name}; no module given defines it, so it cannot be drawn "
            f"(sagas known: {known})"
        )
    saga: Saga[Any] = sagas[name].saga
    return render(paint(drawing_of(saga), state), fmt)


def graph_flags(parser: argparse.ArgumentParser) -> None:
    """``--format`` and ``--output``, shared by ``saga graph`` and ``saga show --graph``."""
    parser.add_argument(
        "--format",
        choices=FORMATS,
        default="mermaid",
        help="mermaid (pastes into a README or an issue), dot (Graphviz) or svg (standalone)",
    )
    parser.add_argument("--output", metavar="FILE", help="write the drawing here (default: print)")


def register(sub: Any) -> None:
    """Add ``saga graph``."""
    p = add_command(
        sub,
        "graph",
        cmd_graph,
        "draw a saga from its definition: steps by dependency, each with its compensation",
        "saga graph OrderSaga --module workflows.order --format svg --output order.svg",
    )
    p.add_argument("saga", help="the saga's name, for example OrderSaga")
    module_flag(p)
    graph_flags(p)


def drawer(args: argparse.Namespace) -> Callable[[str], Awaitable[tuple[str, bool]]] | None:
    """What ``saga codec-server`` draws runs with: their sagas from ``--module`` (None: none)."""
    sagas = load_sagas(modules(args))
    if not sagas:
        return None
    connected: list[Client] = []

    async def draw(run_id: str) -> tuple[str, bool]:
        if not connected:
            connected.append(await client(args))
        try:
            state, description, _ = await read_saga(connected[0], run_id)
        except RPCError as err:
            if err.status is RPCStatusCode.NOT_FOUND:
                raise LookupError(f"no saga run {run_id!r} in namespace {args.namespace}") from None
            raise
        svg = _painted(sagas, run_id, state, description.workflow_type, "svg")
        return svg, description.status is WorkflowExecutionStatus.RUNNING

    return draw
