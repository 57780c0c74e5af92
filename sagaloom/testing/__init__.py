"""Testing sagas: a ready environment, a scripted participant, and fault injection.

::

    async with saga_environment() as env:
        participant = ScriptedParticipant({"payment POST /charges": refused})
        async with env.worker([OrderSaga], participant=participant) as worker:
            handle = await start_saga(env.client, ORDER, data, task_queue=worker.task_queue)
"""

from sagaloom._public import publish as _publish
from sagaloom.testing._environment import SagaEnvironment, saga_environment
from sagaloom.testing._faults import INJECTED_FAULT, Fault, FaultInjector, FaultKind
from sagaloom.testing._scripted import Answer, ScriptedParticipant

__all__ = [
    "INJECTED_FAULT",
    "Answer",
    "Fault",
    "FaultInjector",
    "FaultKind",
    "SagaEnvironment",
    "ScriptedParticipant",
    "saga_environment",
]

_publish(globals(), __all__, __name__)
