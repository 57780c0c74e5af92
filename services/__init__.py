"""Demo participant services: inventory, payment, shipping, flights, hotels, cars; warehouse.

Each is a real HTTP server on loopback (FastAPI under uvicorn) with its own SQLite file, built
on the participant toolkit (:mod:`sagaloom.service`): the toolkit applies each command once in
the transaction of the service's writes; the services hold only their business rules and the
demo's fault-injection switches. The warehouse is event-driven instead: it takes its commands
over NATS JetStream, through the toolkit's broker consumer.
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
