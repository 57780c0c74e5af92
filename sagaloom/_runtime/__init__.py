"""The saga runtime: a :class:`~sagaloom.Saga` run as a Temporal workflow, split by concern."""

from sagaloom._runtime._build import check_importable, saga_workflow
from sagaloom._runtime._workflow import SagaWorkflow

__all__ = ["SagaWorkflow", "check_importable", "saga_workflow"]
