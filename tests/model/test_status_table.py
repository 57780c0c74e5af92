"""Every HTTP status from 100 to 599 read as the participant protocol's table says.

The expectation is this file's own table, written from the protocol's rules (docs/participants.md
"How the answer is read", the README's rules 2 and 3) — never from the code's own sets — and the
docs' table must say the same. Each status goes through the real HTTP activity (an in-memory
transport, the SDK's activity environment).
"""

from __future__ import annotations

import re

import httpx
import pytest
from temporalio.exceptions import ApplicationError, ApplicationErrorCategory

from tests._helpers import ROOT
from tests.toolkit.test_http_participant import call

TOOK_EFFECT, UNAVAILABLE, REFUSED, UNKNOWN = "took effect", "unavailable", "refused", "unknown"


def spec(status: int) -> str:
    """The protocol's rule for ``status``."""
    if 200 <= status <= 299:
        return TOOK_EFFECT
    if status in (408, 425, 429) or 500 <= status <= 599:
        return UNAVAILABLE
    if 400 <= status <= 499:
        return REFUSED
    return UNKNOWN  # 1xx, 3xx: not a refusal, redirects are not followed


EXPECTED_ERROR = {
    UNAVAILABLE: ("ParticipantUnavailable", True),
    REFUSED: ("ParticipantRejected", False),
    UNKNOWN: ("UnexpectedStatus", False),
}
"""What a failed call raises: its type and whether it is retried."""


async def read_as(status: int) -> tuple[str, ApplicationError | None]:
    try:
        response, _ = await call(lambda r: httpx.Response(status, json={"id": "x"}))
    except ApplicationError as err:
        by_type = {kind: read for read, (kind, _) in EXPECTED_ERROR.items()}
        return by_type.get(err.type or "", f"? {err.type}"), err
    assert response.status == status
    return TOOK_EFFECT, None


async def test_every_status_from_100_to_599_reads_as_the_protocol_says() -> None:
    wrong = []
    for status in range(100, 600):
        read, err = await read_as(status)
        want = spec(status)
        if read != want:
            wrong.append(f"{status}: read as {read}, the protocol says {want}")
            continue
        if err is None:
            continue
        _, retried = EXPECTED_ERROR[want]
        if err.non_retryable == retried:
            wrong.append(f"{status}: retried={not err.non_retryable}, want {retried}")
        if f"HTTP {status}" not in err.message:
            wrong.append(f"{status}: the error does not name the status: {err.message}")
        # a refusal and an unavailable participant are the saga's business, not a bug: the
        # SDK logs them at DEBUG (one line from the saga when a step fails for good)
        quiet = want in (REFUSED, UNAVAILABLE)
        if (err.category == ApplicationErrorCategory.BENIGN) != quiet:
            wrong.append(f"{status}: category {err.category!r}, quiet should be {quiet}")
    assert not wrong, "\n".join(wrong)


def docs_table() -> dict[int, str]:
    """The docs' status table, expanded to one row per status."""
    text = (ROOT / "docs" / "participants.md").read_text()
    table = text.split("<!-- status-table -->")[1].split("<!-- /status-table -->")[0]
    read: dict[int, str] = {}
    for row in table.strip().splitlines()[2:]:
        cells = [c.strip() for c in row.strip("|").split("|")]
        statuses, _, but = cells[0].partition(", but ")
        codes: set[int] = set()
        for part in statuses.split(","):
            low, _, high = part.strip().partition("\u2013")  # an en dash, as the docs write ranges
            codes |= set(range(int(low), int(high or low) + 1))
        codes -= {int(c) for c in re.findall(r"\d+", but)}
        for code in codes:
            assert code not in read, f"docs: status {code} in two rows"
            read[code] = cells[1]
    return read


def test_the_docs_table_says_what_the_protocol_says_for_every_status() -> None:
    read = docs_table()
    assert sorted(read) == list(range(100, 600))
    assert {s: spec(s) for s in range(100, 600)} == read


@pytest.mark.parametrize("status", [408, 425, 429, 500, 503])
async def test_an_unavailable_answer_honours_retry_after(status: int) -> None:
    with pytest.raises(ApplicationError) as caught:
        await call(lambda r: httpx.Response(status, headers={"Retry-After": "3"}))
    assert caught.value.next_retry_delay is not None
    assert caught.value.next_retry_delay.total_seconds() == 3
