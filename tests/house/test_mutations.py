"""The mutation list still fits today's code: each mutation's text occurs exactly once."""

from __future__ import annotations

import pytest

from tests.mutations import MUTATIONS, ROOT, Mutation


def test_there_are_at_least_twenty_named_mutations() -> None:
    assert len(MUTATIONS) >= 20
    assert len({m.promise for m in MUTATIONS}) == len(MUTATIONS)


@pytest.mark.parametrize("mutation", MUTATIONS, ids=lambda m: m.promise[:60])
def test_each_mutation_applies_to_the_code_as_it_is(mutation: Mutation) -> None:
    text = (ROOT / mutation.path).read_text()
    assert text.count(mutation.old) == 1, f"{mutation.path}: the mutated text moved"
    assert mutation.new != mutation.old
    if mutation.path.endswith(".py"):  # a mutant that does not compile is no mutant: it would
        compile(text.replace(mutation.old, mutation.new), mutation.path, "exec")  # fail anything
    for arg in mutation.tests:
        if arg.startswith("tests/"):
            assert (ROOT / arg).exists()
