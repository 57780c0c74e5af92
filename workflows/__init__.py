"""Sagas on Temporal: the runtime used inside workflows, and the example sagas built with it.

Define a saga as a :class:`Saga` of :class:`Step` objects, turn it into a workflow class with
:func:`saga_workflow`, and register that class on a worker. Everything in this package is
sandbox-safe: no I/O, no environment reads, no side effects at import.
"""

from workflows._definition import (
    Activity,
    Http,
    Saga,
    SagaDefinitionError,
    SagaInputError,
    Step,
    StepContext,
    StepDefaults,
    Timer,
    UndoContext,
)
from workflows._graph import Graph, StepKind
from workflows._model import (
    SAGA_COMPENSATED,
    SAGA_COMPENSATION_FAILED,
    SAGA_INPUT_ERROR,
    CompensationState,
    Decision,
    HttpRequest,
    HttpResponse,
    Reply,
    Resolution,
    ResolveAction,
    SagaReport,
    SagaState,
    SagaStatus,
    StepState,
    StepStatus,
)
from workflows._runtime import (
    HTTP_ACTIVITY,
    SAGA_KEY,
    SAGA_NAME,
    SAGA_STATUS,
    SAGA_STEP,
    SEARCH_ATTRIBUTES,
    SagaWorkflow,
    check_importable,
    compensation_activity_id,
    saga_workflow,
)

__all__ = [
    "HTTP_ACTIVITY",
    "SAGA_COMPENSATED",
    "SAGA_COMPENSATION_FAILED",
    "SAGA_INPUT_ERROR",
    "SAGA_KEY",
    "SAGA_NAME",
    "SAGA_STATUS",
    "SAGA_STEP",
    "SEARCH_ATTRIBUTES",
    "Activity",
    "CompensationState",
    "Decision",
    "Graph",
    "Http",
    "HttpRequest",
    "HttpResponse",
    "Reply",
    "Resolution",
    "ResolveAction",
    "Saga",
    "SagaDefinitionError",
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
    "check_importable",
    "compensation_activity_id",
    "saga_workflow",
]
