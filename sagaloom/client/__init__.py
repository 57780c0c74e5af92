"""Starting sagas and reading how they went: connect, start, outcome, list.

Any Temporal client works (``Client.connect(..., plugins=[SagaloomPlugin()])``); these helpers
add validation before a saga starts, its summary and search attributes, and a readable outcome.
"""

from sagaloom._public import publish as _publish
from sagaloom.client._broker_admin import DeadLetter, dead_letters, redeliver, saga_events
from sagaloom.client._deployments import set_current_build
from sagaloom.client._operations import (
    BulkSummary,
    act_on_held,
    compensate_held,
    held_query,
    mark_done,
    redrive,
)
from sagaloom.client._runs import (
    DEFAULT_UI,
    MAX_INPUT_BYTES,
    EarlyAnswer,
    Outcome,
    SagaAlreadyRan,
    connect,
    outcome,
    run,
    start_attributes,
    start_saga,
    ui_link,
)
from sagaloom.client._views import SagaRow, list_query, list_sagas

__all__ = [
    "DEFAULT_UI",
    "MAX_INPUT_BYTES",
    "BulkSummary",
    "DeadLetter",
    "EarlyAnswer",
    "Outcome",
    "SagaAlreadyRan",
    "SagaRow",
    "act_on_held",
    "compensate_held",
    "connect",
    "dead_letters",
    "held_query",
    "list_query",
    "list_sagas",
    "mark_done",
    "outcome",
    "redeliver",
    "redrive",
    "run",
    "saga_events",
    "set_current_build",
    "start_attributes",
    "start_saga",
    "ui_link",
]

_publish(globals(), __all__, __name__)
