"""The pure scheduling decisions, property-tested over random step graphs (no server).

A saga's steps form a dependency graph; these check, for any graph hypothesis draws, any set of
steps that started and any order in which running work finishes, that steps run only after
their dependencies and compensations only after those of every started step that depends on
them — the rules the runtime applies through ``sagaloom._saga._schedule``.
"""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

from sagaloom._saga._graph import resolve_graph
from sagaloom._saga._schedule import ready_to_run, ready_to_undo, undo_order


@dataclass(frozen=True)
class _Step:
    name: str
    after: tuple[str, ...] | None
    kind: str = "compensatable"
    compensation: object | None = True


@st.composite
def graphs(draw: st.DrawFn) -> list[_Step]:
    """A random acyclic graph: each step may depend on any earlier ones (or on none)."""
    size = draw(st.integers(1, 9))
    steps = []
    for i in range(size):
        earlier = [f"s{j}" for j in range(i)]
        deps = st.lists(st.sampled_from(earlier), unique=True) if earlier else st.just([])
        after = draw(st.one_of(st.none(), deps))
        steps.append(_Step(f"s{i}", tuple(after) if after is not None else None))
    return steps


def _simulate_forward(steps: list[_Step], picks: list[int]) -> list[str]:
    """Run the graph as the runtime does; ``picks`` chooses which running step finishes next."""
    graph = resolve_graph(steps)
    waiting, running, finished, order = [s.name for s in steps], [], [], []
    while waiting or running:
        for name in ready_to_run(graph.depends_on, waiting, set(finished)):
            waiting.remove(name)
            running.append(name)
            order.append(name)
        assert running, "nothing ready and nothing running: the loop would hang"
        done = running.pop(picks.pop() % len(running) if picks else 0)
        finished.append(done)
    return order


@settings(max_examples=200, deadline=None)
@given(graphs(), st.lists(st.integers(0, 50), max_size=20))
def test_every_step_starts_once_and_after_its_dependencies(
    steps: list[_Step], picks: list[int]
) -> None:
    graph = resolve_graph(steps)
    order = _simulate_forward(steps, picks)
    assert sorted(order) == sorted(s.name for s in steps)
    for name in order:
        for dep in graph.depends_on[name]:
            assert order.index(dep) < order.index(name)


@settings(max_examples=200, deadline=None)
@given(graphs(), st.data())
def test_compensations_run_in_reverse_topological_order(
    steps: list[_Step], data: st.DataObject
) -> None:
    graph = resolve_graph(steps)
    start_order = _simulate_forward(steps, data.draw(st.lists(st.integers(0, 50), max_size=20)))
    # Any prefix-closed set of started steps: a step started only if its dependencies did.
    cut = data.draw(st.integers(1, len(start_order)))
    started = start_order[:cut]
    todo, running, undone, finished_at = undo_order(started), [], [], {}
    clock = 0
    while todo or running:
        for name in ready_to_undo(graph.descendants, set(started), todo, set(undone)):
            todo.remove(name)
            running.append(name)
            # It may start only once every started step that depends on it is undone.
            for later in graph.descendants[name] & set(started):
                assert later in finished_at, f"{name} undone before its dependent {later}"
        assert running, "nothing ready and nothing running: the loop would hang"
        done = running.pop(data.draw(st.integers(0, len(running) - 1)))
        clock += 1
        finished_at[done] = clock
        undone.append(done)
    assert sorted(undone) == sorted(started)


def test_a_sequence_is_undone_in_reverse_start_order() -> None:
    steps = [_Step("a", None), _Step("b", None), _Step("c", None)]
    graph = resolve_graph(steps)
    todo, undone = undo_order(["a", "b", "c"]), []
    while todo:
        ready = ready_to_undo(graph.descendants, {"a", "b", "c"}, todo, set(undone))
        assert len(ready) == 1
        todo.remove(ready[0])
        undone.append(ready[0])
    assert undone == ["c", "b", "a"]


def test_a_diamond_waits_for_both_branches() -> None:
    steps = [_Step("a", ()), _Step("b", ("a",)), _Step("c", ("a",)), _Step("d", ("b", "c"))]
    graph = resolve_graph(steps)
    assert ready_to_run(graph.depends_on, ["b", "c", "d"], {"a"}) == ["b", "c"]
    assert ready_to_run(graph.depends_on, ["d"], {"a", "b"}) == []
    started = {"a", "b", "c", "d"}
    assert ready_to_undo(graph.descendants, started, ["d", "c", "b", "a"], set()) == ["d"]
    assert ready_to_undo(graph.descendants, started, ["c", "b", "a"], {"d"}) == ["c", "b"]
    assert ready_to_undo(graph.descendants, started, ["a"], {"d", "c"}) == []
    # A dependent that never started does not hold its dependency's undo back.
    assert ready_to_undo(graph.descendants, {"a", "b"}, ["b", "a"], set()) == ["b"]


def test_release_batches_never_exceed_the_rate() -> None:
    from datetime import timedelta

    from sagaloom._saga._outage import BreakerSettings, release_gap

    for rate in (0.25, 0.5, 1.0, 2.5, 10.0, 33.3):
        batch, pause = release_gap(BreakerSettings(release_per_second=rate))
        assert batch >= 1 and batch / pause.total_seconds() <= rate + 1e-9
        assert pause <= timedelta(seconds=max(1.0, 1 / rate))
