"""sagaloom: saga orchestration on Temporal in typed Python.

Define a saga as a :class:`Saga` of :class:`Step` objects, turn it into a Temporal workflow
class with :func:`saga_workflow`, and run it on a worker that has the :class:`SagaloomPlugin`
(``sagaloom.worker``). Start it and read how it ended with ``sagaloom.client``.

This module and everything it imports is sandbox-safe: no I/O, no environment reads, no side
effects at import. The roles live in subpackages, as in the Temporal SDK:

* ``sagaloom`` — the definition API, the models a saga reports, and its errors;
* ``sagaloom.client`` — connect, start a saga, read its outcome, list sagas;
* ``sagaloom.worker`` — the plugin, worker configuration, running workers;
* ``sagaloom.participants`` — the HTTP participant, its error classification, and the broker
  protocol (subjects, headers) an event-driven participant codes against;
* ``sagaloom.testing`` — the fault-injection kit and a ready test environment;
* ``sagaloom.server`` — the embedded Temporal dev server and NATS JetStream broker.
"""

from sagaloom._public import publish as _publish
from sagaloom._runtime import SagaWorkflow, saga_workflow
from sagaloom._saga._definition import (
    Activity,
    ChildSaga,
    Command,
    ForEach,
    Http,
    ItemContext,
    Saga,
    SagaDefinitionError,
    SagaInputError,
    Step,
    StepContext,
    StepDefaults,
    Timer,
    UndoContext,
)
from sagaloom._saga._graph import StepKind
from sagaloom._saga._model import (
    EVENT_TYPES,
    EXCLUSIVE_TIMEOUT,
    SAGA_COMPENSATED,
    SAGA_COMPENSATION_FAILED,
    SAGA_ENDED_FIRST,
    SAGA_INPUT_ERROR,
    SAGA_NEEDS_ATTENTION,
    CompensationState,
    Decision,
    Reply,
    Resolution,
    ResolveAction,
    SagaEvent,
    SagaReport,
    SagaState,
    SagaStatus,
    StepState,
    StepStatus,
)
from sagaloom._wire._names import (
    SAGA_KEY,
    SAGA_NAME,
    SAGA_STATUS,
    SAGA_STEP,
    SAGALOOM_VERSION,
    SEARCH_ATTRIBUTES,
)
from sagaloom._wire._release import VERSION as _VERSION
from sagaloom._wire._release import UnsupportedRun

__all__ = [
    "EVENT_TYPES",
    "EXCLUSIVE_TIMEOUT",
    "SAGALOOM_VERSION",
    "SAGA_COMPENSATED",
    "SAGA_COMPENSATION_FAILED",
    "SAGA_ENDED_FIRST",
    "SAGA_INPUT_ERROR",
    "SAGA_KEY",
    "SAGA_NAME",
    "SAGA_NEEDS_ATTENTION",
    "SAGA_STATUS",
    "SAGA_STEP",
    "SEARCH_ATTRIBUTES",
    "Activity",
    "ChildSaga",
    "Command",
    "CompensationState",
    "Decision",
    "ForEach",
    "Http",
    "ItemContext",
    "Reply",
    "Resolution",
    "ResolveAction",
    "Saga",
    "SagaDefinitionError",
    "SagaEvent",
    "SagaInputError",
    "SagaReport",
    "SagaState",
    "SagaStatus",
    "SagaWorkflow",
    "Step",
    "StepContext",
    "StepDefaults",
    "StepKind",
    "StepState",
    "StepStatus",
    "Timer",
    "UndoContext",
    "UnsupportedRun",
    "saga_workflow",
]

__version__ = _VERSION
"""This build's release (``saga --version``; docs/upgrading.md)."""

_publish(globals(), __all__, __name__)
