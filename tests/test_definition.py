"""Saga definitions are checked when built; inputs are checked field by field."""

from __future__ import annotations

from datetime import timedelta

import pytest

from sagaloom import Http, Saga, SagaDefinitionError, SagaInputError, Step, Timer
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
