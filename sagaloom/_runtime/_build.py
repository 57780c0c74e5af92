"""Building the Temporal workflow class of a saga definition."""

from __future__ import annotations

import sys
from typing import Any

from temporalio import workflow

from sagaloom._runtime._workflow import SagaWorkflow
from sagaloom._saga._definition import Saga, SagaDefinitionError
from sagaloom._saga._model import SagaReport

__all__ = ["check_importable", "saga_workflow"]


def saga_workflow(saga: Saga[Any]) -> type[SagaWorkflow]:
    """Build the Temporal workflow class that runs ``saga``; register it on a worker.

    Assign the result to a module-level name equal to ``saga.name`` (the workflow sandbox
    re-imports it by that name)::

        OrderSaga = saga_workflow(ORDER)

    Args:
        saga: The saga definition.

    Returns:
        A ``@workflow.defn`` class named ``saga.name`` whose run method takes the saga input
        (a model or its JSON) and returns a :class:`SagaReport`.
    """
    module = sys._getframe(1).f_globals.get("__name__", __name__)

    async def run(self: SagaWorkflow, input: Any) -> SagaReport:
        return await self._execute(input)

    run.__qualname__ = f"{saga.name}.run"
    run.__module__ = module
    namespace = {"saga": saga, "run": workflow.run(run), "__module__": module}
    cls = type(saga.name, (SagaWorkflow,), namespace)
    cls.__qualname__ = saga.name
    cls.__doc__ = saga.description or f"Saga {saga.name}."
    return workflow.defn(name=saga.name)(cls)


def check_importable(cls: type[SagaWorkflow]) -> None:
    """Fail clearly if the sandbox could not re-import ``cls`` by its module and name."""
    module = sys.modules.get(cls.__module__)
    if module is None or getattr(module, cls.__name__, None) is not cls:
        raise SagaDefinitionError(
            f"saga workflow {cls.__name__!r} must be assigned to the module-level name "
            f"{cls.__name__!r} in {cls.__module__}"
        )
