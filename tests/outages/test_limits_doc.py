"""docs/limits.md says what the code enforces: each marked figure is the constant in the code."""

from __future__ import annotations

import re

from sagaloom._config._settings import setting
from sagaloom._runtime._fanout import MAX_OUTPUTS_BYTES
from sagaloom._saga._definition import MAX_ITEMS
from sagaloom._saga._model import MAX_REPLY_BYTES, MAX_REPLY_DEPTH, MAX_STORED_REPLY_BYTES
from sagaloom.client import MAX_INPUT_BYTES
from sagaloom.client._keydesk import MOST_EARLY_KEYS
from sagaloom.service import MAX_BODY_BYTES, MAX_DEPTH
from sagaloom.worker._endpoint import MAX_BODY_BYTES as ENDPOINT_BODY
from tests._helpers import ROOT

CODE = {
    "MAX_INPUT_BYTES": MAX_INPUT_BYTES,
    "MAX_ITEMS": MAX_ITEMS,
    "MAX_OUTPUTS_BYTES": MAX_OUTPUTS_BYTES,
    "MOST_EARLY_KEYS": MOST_EARLY_KEYS,
    "MAX_REPLY_BYTES": MAX_REPLY_BYTES,
    "MAX_REPLY_DEPTH": MAX_REPLY_DEPTH,
    "MAX_STORED_REPLY_BYTES": MAX_STORED_REPLY_BYTES,
    "STORED_INPUT_BYTES": setting("max_input_bytes").default,
    "PAYLOAD_THRESHOLD": setting("payload_threshold").default,
    "ENDPOINT_BODY": ENDPOINT_BODY,
    "SERVICE_BODY": MAX_BODY_BYTES,
    "SERVICE_DEPTH": MAX_DEPTH,
}


def test_every_limit_on_the_page_is_the_one_in_the_code() -> None:
    page = (ROOT / "docs" / "limits.md").read_text()
    said = dict(re.findall(r"<!-- limit: (\w+) -->([\d,]+)", page))
    assert set(said) == set(CODE)
    for name, value in CODE.items():
        assert int(said[name].replace(",", "")) == value, name
