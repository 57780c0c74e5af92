"""The saga runtime: a :class:`~sagaloom.Saga` run as a Temporal workflow, split by concern."""

from sagaloom._runtime._workflow import SagaWorkflow, check_importable, saga_workflow

__all__ = ["SagaWorkflow", "check_importable", "saga_workflow"]
