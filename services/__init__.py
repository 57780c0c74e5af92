"""Demo participant services: inventory, payment, shipping, flights, hotels and cars.

Each is a real HTTP server on loopback with its own SQLite store, idempotent endpoints,
compensation endpoints and fault-injection switches. Built on the standard library
(``http.server`` and ``sqlite3``) so the demo needs nothing beyond the engine's own dependencies.
"""

from services._catalog import CATALOG, Rejection, ServiceSpec
from services._server import Fault, Participant, RunningServices, serve
from services._store import Store

__all__ = [
    "CATALOG",
    "Fault",
    "Participant",
    "Rejection",
    "RunningServices",
    "ServiceSpec",
    "Store",
    "serve",
]
