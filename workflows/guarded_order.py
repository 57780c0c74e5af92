"""Example saga: the order, as a payments team runs it — an unexpected failure holds it.

The same steps as :mod:`workflows.order`, with ``on_failure="hold"``: a business refusal (a
card declined, an address the shipper refuses) still compensates, but a participant that
answers 500 until its fix is deployed, a timeout or an unreadable answer holds the saga at the
step, its earlier steps in place, for an operator to redrive once the cause is fixed (``saga
redrive``), rather than refunding a customer who did nothing wrong.
"""

from __future__ import annotations

import dataclasses

from sagaloom import Saga, saga_workflow
from workflows.order import ORDER, OrderInput

__all__ = ["GUARDED_ORDER", "GuardedOrderSaga"]

GUARDED_ORDER: Saga[OrderInput] = dataclasses.replace(
    ORDER,
    name="GuardedOrderSaga",
    description="Order, held on an unexpected failure: reserve stock, charge, ship",
    on_failure="hold",
)
"""The order saga whose unexpected failures hold for an operator."""

GuardedOrderSaga = saga_workflow(GUARDED_ORDER)
"""Its Temporal workflow class (workflow type ``GuardedOrderSaga``)."""
