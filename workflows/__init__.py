"""The example sagas, laid out as your own saga project's ``workflows/`` would be.

``order`` (reserve stock, charge payment, create shipment) and ``trip`` (flight, asynchronous
hotel, cooling-off timer, car). Each module defines its saga with the public ``sagaloom`` API and
assigns the workflow class to the saga's name; a worker registers it with
``--module workflows.order``. Saga modules must stay sandbox-safe: no I/O at import.
"""
