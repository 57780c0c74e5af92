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
