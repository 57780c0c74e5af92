"""Demo participant services: inventory, payment, shipping, flights, hotels, cars; warehouse.

Each is a real HTTP server on loopback with its own SQLite store, idempotent endpoints,
compensation endpoints and fault-injection switches. Built on the standard library
(``http.server`` and ``sqlite3``) so the demo needs nothing beyond the engine's own dependencies;
the warehouse is event-driven instead: it takes its commands over NATS JetStream.
"""

from services._catalog import CATALOG, Rejection, ServiceSpec
from services._server import Fault, Participant, RunningServices, serve
from services._store import Store
from services._warehouse import Warehouse

__all__ = [
    "CATALOG",
    "Fault",
    "Participant",
    "Rejection",
    "RunningServices",
    "ServiceSpec",
    "Store",
    "Warehouse",
    "serve",
]
