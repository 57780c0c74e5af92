"""The rules of one exclusive key, apart from any workflow: who gets it, who waits.

Here the early asks: ``start_saga`` takes a saga's free keys before starting it. An early ask
never queues and never counts a key as taken that someone holds (the saga itself included:
then the saga asks, in turn); an early hold its saga never asked for is given back if the start
did not happen, and is not looked for by the closed-holder check while the saga may be starting.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sagaloom._runtime._keyrules import (
    EARLY_GRACE,
    EARLY_TRUST,
    KeyLockState,
    KeyRequest,
    acquire,
    grant_next,
    release,
)

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def ask(key: KeyLockState, saga: str, *, early: bool = False) -> bool:
    return acquire(key, KeyRequest(key=key.key, saga_id=saga, early=early), NOW).granted


def test_an_early_ask_takes_a_free_key_and_says_when() -> None:
    key = KeyLockState(key="account:a")
    answer = acquire(key, KeyRequest(key="account:a", saga_id="s1", early=True), NOW)
    assert answer.granted and answer.since == NOW
    assert key.holder == "s1" and key.early and key.starting(NOW + EARLY_GRACE / 2)
    assert not key.starting(NOW + EARLY_GRACE)  # from then on, its run is looked for


def test_an_early_ask_for_a_held_key_neither_takes_it_nor_queues() -> None:
    key = KeyLockState(key="account:a")
    assert ask(key, "holder")
    assert not ask(key, "s2", early=True)
    assert key.queue == [] and key.holder == "holder"
    assert not ask(key, "holder", early=True)  # its own: the saga asks itself (a reset, a rerun)
    assert ask(key, "s3") is False and [r.saga_id for r in key.queue] == ["s3"]
    assert not ask(key, "s4", early=True) and [r.saga_id for r in key.queue] == ["s3"]


def test_the_saga_asking_for_its_early_key_makes_it_its_own() -> None:
    key = KeyLockState(key="account:a")
    assert ask(key, "s1", early=True)
    assert ask(key, "s1") and key.holder == "s1" and not key.early
    release(key, "s1", early_only=True)  # a start that "did not happen" cannot free it now
    assert key.holder == "s1"


def test_an_early_hold_is_given_back_when_the_start_did_not_happen() -> None:
    key = KeyLockState(key="account:a")
    assert ask(key, "s1", early=True)
    assert not ask(key, "s2")
    release(key, "other", early_only=True)
    assert key.holder == "s1"
    release(key, "s1", early_only=True)
    assert key.holder is None and not key.early
    waiter = grant_next(key, NOW)
    assert waiter is not None and waiter.saga_id == "s2" and not key.early


def test_a_saga_trusts_its_early_keys_for_less_time_than_the_shard_spares_them() -> None:
    assert timedelta(0) < EARLY_TRUST < EARLY_GRACE


def answer(key: KeyLockState, saga: str, **more: object) -> dict[str, object]:
    found = acquire(key, KeyRequest(key=key.key, saga_id=saga, **more), NOW)  # type: ignore[arg-type]
    return found.model_dump(exclude_defaults=True)


def test_every_answer_names_the_holder_when_it_began_and_a_waiters_place() -> None:
    """docs/isolation.md: sagas sharing a key run one at a time, in arrival order; a waiter
    is told who holds the key and its place in line."""
    key = KeyLockState(key="k")
    assert answer(key, "a") == {"granted": True, "holder": "a", "since": NOW}
    assert answer(key, "a") == {"granted": True, "holder": "a", "since": NOW}  # asked again
    assert answer(key, "b") == {"granted": False, "holder": "a", "position": 1}
    assert answer(key, "c") == {"granted": False, "holder": "a", "position": 2}
    assert answer(key, "b") == {"granted": False, "holder": "a", "position": 1}  # keeps its place
    assert [r.saga_id for r in key.queue] == ["b", "c"]
    early = KeyLockState(key="e")
    assert answer(early, "x", early=True) == {"granted": True, "holder": "x", "since": NOW}
    assert answer(early, "y", early=True) == {"granted": False, "holder": "x"}


def test_a_child_saga_shares_its_parents_hold_until_it_lets_go() -> None:
    """docs/isolation.md: a child saga of the holder shares the key (no deadlock with its
    parent); its release leaves the parent's hold in place."""
    key = KeyLockState(key="k")
    assert answer(key, "parent")["granted"]
    assert answer(key, "child", family=["parent"]) == {"granted": True, "holder": "parent"}
    assert key.guests == ["child"] and key.queue == []
    assert answer(key, "child", family=["parent"])["granted"]  # asked again: still a guest
    assert key.guests == ["child"]
    assert answer(key, "stranger", family=["other"])["granted"] is False
    release(key, "child")
    assert key.holder == "parent" and key.guests == [] and len(key.queue) == 1
    release(key, "stranger")  # a waiter gives up: it leaves the line, nobody else does
    assert key.holder == "parent" and key.queue == []


def test_a_release_frees_only_what_the_saga_had_and_the_next_in_line_gets_it() -> None:
    key = KeyLockState(key="k")
    for saga in ("a", "b", "c", "d"):
        answer(key, saga)
    release(key, "c")  # a waiter leaves: the others keep their order
    assert key.holder == "a" and [r.saga_id for r in key.queue] == ["b", "d"]
    assert grant_next(key, NOW) is None  # held: nobody is next yet
    release(key, "a")
    assert key.holder is None and key.guests == [] and not key.early
    later = NOW + timedelta(seconds=3)
    waiter = grant_next(key, later)
    assert waiter is not None and waiter.saga_id == "b"
    assert key.holder == "b" and key.since == later and [r.saga_id for r in key.queue] == ["d"]
    release(key, "nobody")  # neither holder, guest nor waiter: nothing changes
    assert key.holder == "b" and [r.saga_id for r in key.queue] == ["d"]
    release(key, "b")
    release(key, "d")
    assert key.idle() and grant_next(key, later) is None
