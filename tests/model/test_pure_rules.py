"""The pure decision rules, each at its edges: fan-out items, the graph, error texts.

The expectations are the docs' rules (docs/fanout.md's table of which items are undone,
docs/sagas.md's graph rules, docs/participants.md's status table and redaction), in
milliseconds with no server; ``mutmut`` runs these with the other fast tests over the pure
modules (docs/mutations.md).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from sagaloom import Http, Saga, SagaDefinitionError, Step
from sagaloom._saga._fanout_rules import (
    ItemResult,
    ItemStatus,
    batches,
    counts,
    may_have_taken_effect,
    to_undo,
)
from sagaloom._saga._holding import merge_patch
from sagaloom.participants import redact, retry_after
from sagaloom.participants._classify import classify_response

# -- fan-out ---------------------------------------------------------------------------------

UNDONE = {ItemStatus.DONE, ItemStatus.FAILED, ItemStatus.CANCELLED}
"""docs/fanout.md: items that took or may have taken effect are undone; refused and never
started ones are not."""


@pytest.mark.parametrize("status", list(ItemStatus))
def test_an_item_is_undone_exactly_when_it_may_have_taken_effect(status: ItemStatus) -> None:
    assert may_have_taken_effect(status) is (status in UNDONE)


def test_the_items_to_undo_are_those_that_may_have_run_not_yet_undone_last_first() -> None:
    items = [ItemResult(index=n, key=f"k{n}", status=s) for n, s in enumerate(ItemStatus)]
    expected = sorted((r.index for r in items if r.status in UNDONE), reverse=True)
    assert to_undo(items, set()) == expected
    assert to_undo(items, {expected[0]}) == expected[1:]  # one undone already: not again
    assert to_undo([], set()) == []


def test_batches_cover_every_item_once_in_order() -> None:
    assert batches(0, 3) == []
    assert batches(7, 3) == [range(0, 3), range(3, 6), range(6, 7)]
    assert batches(6, 3) == [range(0, 3), range(3, 6)]
    assert batches(2, 500) == [range(0, 2)]


def test_the_counts_name_done_failed_and_refused_items() -> None:
    items = [
        ItemResult(index=0, key="a", status=ItemStatus.DONE),
        ItemResult(index=1, key="b", status=ItemStatus.FAILED, error="timed out"),
        ItemResult(index=2, key="c", status=ItemStatus.REFUSED, error="no"),
        ItemResult(index=3, key="d", status=ItemStatus.CANCELLED),
        *(ItemResult(index=n, key=f"x{n}", status=ItemStatus.REFUSED, error="no")
          for n in range(4, 30)),
    ]  # fmt: skip
    found = counts(items, 40, undone=2)
    assert (found.total, found.done, found.failed, found.undone) == (40, 1, 28, 2)
    assert found.failures[:2] == ["b: timed out", "c: no"] and len(found.failures) == 20


# -- the graph -------------------------------------------------------------------------------


def saga(*steps: tuple[str, Any, str]) -> Saga[Any]:
    """Steps as (name, after, kind)."""
    from pydantic import BaseModel

    class In(BaseModel):
        x: int = 0

    return Saga(
        name="G",
        input=In,
        steps=[
            Step(name, Http("s", "POST", f"/{name}"),
                 compensation=None if kind == "retriable" else Http("s", "POST", "/u"),
                 after=after, kind=kind)  # type: ignore[arg-type]
            for name, after, kind in steps
        ],
    )  # fmt: skip


def test_a_plain_list_is_a_sequence_and_anything_else_is_a_graph() -> None:
    c = "compensatable"
    assert saga(("a", None, c), ("b", None, c), ("c", None, c)).graph.sequential
    assert saga(("a", None, c)).graph.sequential
    assert not saga(("a", None, c), ("b", (), c)).graph.sequential
    assert not saga(("a", None, c), ("b", None, c), ("c", ("a",), c)).graph.sequential
    assert saga(("a", None, c), ("b", ("a",), c)).graph.sequential  # said, but the same


def test_descendants_are_every_step_that_depends_through_any_chain() -> None:
    c = "compensatable"
    graph = saga(("a", None, c), ("b", ("a",), c), ("c", ("a",), c), ("d", ("b", "c"), c),
                 ("e", ("d",), c)).graph  # fmt: skip
    assert graph.descendants["a"] == {"b", "c", "d", "e"}
    assert graph.descendants["b"] == {"d", "e"} and graph.descendants["c"] == {"d", "e"}
    assert graph.descendants["e"] == set()


def test_graph_errors_name_the_steps() -> None:
    c = "compensatable"
    with pytest.raises(SagaDefinitionError, match="step 'a': dependency cycle"):
        saga(("a", ("b",), c), ("b", ("a",), c))
    with pytest.raises(SagaDefinitionError, match="step 'b': a saga has at most one pivot "
                       r"\(also 'a'\)"):  # fmt: skip
        saga(("a", None, "pivot"), ("b", None, "pivot"))
    with pytest.raises(SagaDefinitionError, match=r"must run after the pivot \(the saga has "
                       "no pivot\\)"):  # fmt: skip
        saga(("a", None, "retriable"))
    with pytest.raises(SagaDefinitionError, match=r"must run after the pivot$"):
        saga(("p", (), "pivot"), ("r", (), "retriable"))


def test_a_patch_merges_into_what_is_there_at_every_depth() -> None:
    assert merge_patch({"a": {"b": 1, "c": 2}}, {"a": {"b": 3}}) == {"a": {"b": 3, "c": 2}}


# -- error texts -----------------------------------------------------------------------------


def test_redaction_masks_every_secret_keeps_one_line_and_cuts_at_the_limit() -> None:
    assert redact("pay with sk_live_9 and sk_live_9", secrets=["sk_live_9"]) == (
        "pay with *** and ***"
    )
    assert redact("a\nb") == "a b"
    assert redact("Authorization: Bearer abc.def") == "Authorization: ***"
    assert redact("sent Bearer abc.def") == "sent Bearer ***"
    assert redact("x" * 10, limit=10) == "x" * 10
    assert redact("x" * 11, limit=10) == "x" * 10 + "…"


def response(status: int, **headers: str) -> httpx.Response:
    return httpx.Response(status, headers=headers, text="token=s3cret")


def test_retry_after_reads_seconds_and_dates_of_either_form() -> None:
    assert retry_after(response(503, **{"Retry-After": "0"})) == timedelta(0)
    assert retry_after(response(503, **{"Retry-After": "-5"})) == timedelta(0)
    assert retry_after(response(503)) is None
    sent = "Sun, 06 Dec 2026 10:00:00 GMT"
    assert retry_after(response(503, **{"Retry-After": "Sun, 06 Dec 2026 10:00:30 GMT",
                                        "Date": sent})) == timedelta(seconds=30)  # fmt: skip
    # the obsolete asctime form has no zone: GMT, as HTTP says
    assert retry_after(response(503, **{"Retry-After": "Sun Dec  6 10:01:00 2026",
                                        "Date": sent})) == timedelta(seconds=60)  # fmt: skip
    soon = (datetime.now(UTC) + timedelta(seconds=40)).strftime("%a, %d %b %Y %H:%M:%S GMT")
    found = retry_after(response(503, **{"Retry-After": soon}))  # no Date: from now
    assert found is not None and timedelta(seconds=35) < found <= timedelta(seconds=40)


def test_an_unknown_outcome_says_where_it_was_sent_and_why_it_is_undone() -> None:
    moved = classify_response(
        response(303, Location="https://psp/charges/7?token=s3cret"), "payment POST /c", 2,
        ["s3cret"],
    )  # fmt: skip
    assert moved.message == (
        "payment POST /c -> HTTP 303: token=*** (not a refusal: redirects are not followed, "
        "Location: https://psp/charges/7?token=***; the outcome is unknown, so the step is "
        "undone)"
    )
    assert moved.details[0] == {"status": 303, "attempt": 2}
    plain = classify_response(response(102), "payment POST /c", 1)
    assert "Location" not in plain.message and plain.message.startswith(
        "payment POST /c -> HTTP 102: token=*** (not a refusal: redirects are not followed; the"
    )
    refused = classify_response(response(402), "payment POST /c", 1, ["s3cret"])
    assert refused.message == "payment POST /c -> HTTP 402: token=***"


def test_a_refusal_masks_the_calls_secrets_and_says_its_status_and_attempt() -> None:
    refused = classify_response(
        httpx.Response(402, text="card s3cret declined"), "payment POST /c", 4, ["s3cret"]
    )
    assert refused.message == "payment POST /c -> HTTP 402: card *** declined"
    assert refused.details[0] == {"status": 402, "attempt": 4}
    moved = classify_response(
        httpx.Response(307, headers={"Location": "/x/s3cret"}), "payment POST /c", 1, ["s3cret"]
    )
    assert "Location: /x/***" in moved.message


def test_a_transport_error_says_what_failed_masked_and_short_and_is_retried_quietly() -> None:
    from temporalio.exceptions import ApplicationErrorCategory

    from sagaloom.participants._classify import classify_transport_error

    request = httpx.Request("POST", "http://payment/c")
    err = classify_transport_error(
        httpx.ConnectError("refused by s3cret-host " + "x" * 200, request=request),
        "payment POST /c",
        3,
        ["s3cret"],
    )
    assert err.message.startswith("payment POST /c -> ConnectError: refused by ***-host xxx")
    assert (
        err.message.endswith("…")
        and len(err.message) == len("payment POST /c -> ") + len("ConnectError: ") + 120 + 1
    )
    assert err.details[0] == {"attempt": 3} and not err.non_retryable
    assert err.type == "ParticipantUnavailable"
    assert err.category == ApplicationErrorCategory.BENIGN
    bare = classify_transport_error(httpx.ReadTimeout("", request=request), "svc GET /", 1)
    assert bare.message == "svc GET / -> ReadTimeout"


def test_dates_without_a_zone_are_gmt_on_both_sides() -> None:
    assert retry_after(response(503, **{"Retry-After": "Sun Dec  6 10:00:45 2026",
                                        "Date": "Sun Dec  6 10:00:00 2026"})) == timedelta(
        seconds=45
    )  # fmt: skip


def test_a_date_without_the_servers_date_counts_from_now_in_utc_whatever_the_local_zone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import time

    monkeypatch.setenv("TZ", "Asia/Tokyo")  # 9 hours from UTC: a local "now" would be off
    time.tzset()
    try:
        soon = (datetime.now(UTC) + timedelta(seconds=40)).strftime("%a, %d %b %Y %H:%M:%S GMT")
        found = retry_after(response(503, **{"Retry-After": soon}))
        assert found is not None and timedelta(seconds=35) < found <= timedelta(seconds=40)
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()
