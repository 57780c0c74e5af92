"""The participant side of a saga: apply each command exactly once, in your own transaction.

A service that sagas call keeps, in its own database and in the same transaction as its business
write, each command's idempotency key and answer (the inbox). A repeated key gets the first
answer back byte for byte; a compensation whose forward call never arrived leaves a tombstone
that refuses the late forward call (409). See docs/participants.md::

    service = SagaService(sqlite_engine("payments.db"))

    @app.post("/charges")
    @service.action
    async def charge(body: Charge, tx: AsyncSession) -> dict[str, str]:
        tx.add(Payment(order_id=body.order_id, cents=body.cents))
        return {"id": f"ch-{body.order_id}"}

Needs ``pip install 'sagaloom[service]'`` (SQLAlchemy 2 with aiosqlite/asyncpg, Starlette).
(Not :mod:`sagaloom.participants`, which is the engine's calling side.)
"""

from sagaloom._public import publish as _publish
from sagaloom.service._check import needs_the_extra as _needs_the_extra  # noqa: F401 (first)
from sagaloom.service._endpoints import MAX_BODY_BYTES, MAX_DEPTH, SagaService
from sagaloom.service._engine import postgres_url, sqlite_engine
from sagaloom.service._handlers import CommandInfo
from sagaloom.service._inbox import (
    MAX_KEY_LENGTH,
    Answer,
    Inbox,
    Refused,
    forward_key,
    key_problem,
)
from sagaloom.service._outbox import Outbox, Relay
from sagaloom.service._semantic_locks import Busy, Locks

__all__ = [
    "MAX_BODY_BYTES",
    "MAX_DEPTH",
    "MAX_KEY_LENGTH",
    "Answer",
    "Busy",
    "CommandInfo",
    "Inbox",
    "Locks",
    "Outbox",
    "Refused",
    "Relay",
    "SagaService",
    "forward_key",
    "key_problem",
    "postgres_url",
    "sqlite_engine",
]

_publish(globals(), __all__, __name__)
