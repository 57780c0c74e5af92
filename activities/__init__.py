"""Participant-side activities the example sagas call, laid out as your project's would be.

``ledger`` is a participant that runs inside the worker: the transfer saga's debit, credit and
reversal are Temporal activities writing to the ledger's own database, idempotent by the
step's key (``sagaloom.participants.idempotency_key()``), as every activity must be.
"""
