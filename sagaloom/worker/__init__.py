"""Running sagas: the Temporal plugin, worker configuration, and worker processes.

The one line a Temporal project adds::

    client = await Client.connect("localhost:7233", plugins=[SagaloomPlugin(services=urls)])
    worker = Worker(client, task_queue="orders", workflows=[OrderSaga])

or, with a :class:`WorkerConfig` read from the environment, ``build_worker(client, sagas)``.
"""

from sagaloom._ops._logging import configure_logging
from sagaloom._public import publish as _publish
from sagaloom._saga._outage import ServiceLimit
from sagaloom.worker._config import DEFAULT_TASK_QUEUE, ConfigError, WorkerConfig
from sagaloom.worker._plugin import SagaloomPlugin
from sagaloom.worker._registry import UnknownSagaError, find_saga, load_sagas
from sagaloom.worker._run import build_worker, run_worker

__all__ = [
    "DEFAULT_TASK_QUEUE",
    "ConfigError",
    "SagaloomPlugin",
    "ServiceLimit",
    "UnknownSagaError",
    "WorkerConfig",
    "build_worker",
    "configure_logging",
    "find_saga",
    "load_sagas",
    "run_worker",
]

_publish(globals(), __all__, __name__)
