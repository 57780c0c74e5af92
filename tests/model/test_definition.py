"""Saga definitions are checked when built; inputs are checked field by field."""

from __future__ import annotations

from datetime import timedelta

import pytest

from sagaloom import ForEach, Http, Saga, SagaDefinitionError, SagaInputError, Step, Timer
from workflows.order import ORDER, OrderInput
from workflows.trip import TRIP


def step(name: str) -> Step:
    return Step(name, Http("svc", "POST", "/x"), compensation=Http("svc", "POST", "/x/undo"))


def test_duplicate_step_names_are_rejected_naming_the_step() -> None:
    with pytest.raises(SagaDefinitionError, match="step 'pay': duplicate"):
        Saga("S", OrderInput, [step("pay"), step("pay")])


def test_a_timer_cannot_have_a_compensation() -> None:
    with pytest.raises(SagaDefinitionError, match="step 'wait'"):
        Saga(
            "S",
            OrderInput,
            [Step("wait", Timer(timedelta(1)), compensation=Http("s", "POST", "/"))],
        )


def test_empty_sagas_and_bad_names_are_rejected() -> None:
    with pytest.raises(SagaDefinitionError, match="no steps"):
        Saga("S", OrderInput, [])
    with pytest.raises(SagaDefinitionError, match="identifier"):
        Saga("my saga", OrderInput, [step("a")])
    with pytest.raises(SagaDefinitionError, match="without spaces"):
        Saga("S", OrderInput, [step("a b")])


def test_step_lists_its_own_non_retryable_error_types() -> None:
    saga = Saga(
        "S", OrderInput, [Step("a", Http("s", "POST", "/"), non_retryable_errors=["Fraud"])]
    )
    assert "Fraud" in (saga.step_retry(saga.steps[0]).non_retryable_error_types or [])
    assert saga.step_retry(saga.steps[0]).maximum_attempts == 5


def test_parse_input_names_every_bad_field_and_accepts_json() -> None:
    with pytest.raises(SagaInputError) as caught:
        ORDER.parse_input({"order_id": "bad id!", "quantity": -1})
    fields = {name for name, _ in caught.value.problems}
    assert fields == {"order_id", "customer", "sku", "quantity", "amount_cents", "country"}
    assert "invalid input for saga 'OrderSaga'" in str(caught.value)
    trip = TRIP.parse_input('{"trip_id": "t1", "traveller": "a", "destination": "b", "nights": 1}')
    assert trip.cooling_off_seconds == 0


def test_example_sagas_have_the_documented_shape() -> None:
    assert [s.name for s in ORDER.steps] == ["reserve-stock", "charge-payment", "create-shipment"]
    assert all(s.compensation is not None for s in ORDER.steps)
    assert [s.action.kind for s in TRIP.steps] == ["http", "http", "timer", "http"]


def _each(**options: object) -> ForEach:
    base: dict[str, object] = {"items": lambda c: [], "do": Http("svc", "POST", "/x")}
    return ForEach(**{**base, **options})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("options", "says"),
    [
        ({"max_concurrency": 0}, "max_concurrency must be 1 to 1000"),
        ({"batch_size": 5000}, "batch_size must be 1 to 2000"),
        ({"tolerate": -1}, "tolerate must not be negative"),
        ({"tolerate": 1.5}, "fraction must be 0.0 to 1.0"),
        ({"tolerate": True}, "count or a fraction"),
        ({"do": Timer(timedelta(1))}, "must be Http or Activity"),
    ],
)
def test_a_fan_out_with_bad_options_is_rejected_naming_the_step(
    options: dict[str, object], says: str
) -> None:
    with pytest.raises(SagaDefinitionError, match=f"step 'each': .*{says}"):
        Saga("S", OrderInput, [Step("each", _each(**options))])


def test_a_fan_out_undoes_item_by_item_not_with_a_step_compensation() -> None:
    with pytest.raises(SagaDefinitionError, match=r"ForEach\(compensation=\.\.\.\)"):
        Saga("S", OrderInput, [Step("each", _each(), compensation=Http("s", "POST", "/"))])


@pytest.mark.parametrize(
    ("key", "items", "field", "says"),
    [
        (lambda i: i["id"], [{"id": "a"}, {"id": "a"}], "items[1]", "duplicate item key 'a'"),
        (lambda i: i["id"], [{"id": "a"}, {}], "items[1]", "the key function raised KeyError"),
        (lambda i: i["id"], [{"id": ""}], "items[0]", "1 to 200 printable"),
        (lambda i: 7, [{"id": "a"}], "items[0]", "must be a string"),
    ],
)
def test_bad_item_keys_are_an_input_error_naming_the_item(
    key: object, items: list[dict[str, str]], field: str, says: str
) -> None:
    each = _each(key=key)
    with pytest.raises(SagaInputError) as raised:
        each.item_keys("S", items)
    assert raised.value.problems[0][0] == field
    assert says in raised.value.problems[0][1]


def test_tolerate_as_a_count_or_a_fraction_of_the_items() -> None:
    assert _each(tolerate=2).allowed_failures(100) == 2
    assert _each(tolerate=0.1).allowed_failures(25) == 2
    assert _each(tolerate=1.0).allowed_failures(7) == 7
    assert _each().allowed_failures(10) == 0


def test_a_fan_out_takes_100_000_items_and_refuses_one_more() -> None:
    # fanout.md: "A fan-out takes at most 100,000 items."
    each = _each()
    assert len(each.item_keys("S", [{"n": 1}] * 100_000)) == 100_000
    with pytest.raises(SagaInputError) as raised:
        each.item_keys("S", [{"n": 1}] * 100_001)
    assert raised.value.problems[0][0] == "items"
    assert "100001 items; at most 100000" in raised.value.problems[0][1]
