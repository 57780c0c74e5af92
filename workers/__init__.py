"""The reference application's worker entry points and their configuration.

Copy this layout for your own saga project: ``workflows/`` holds the sagas, ``activities/`` the
participant-side activities they call, ``workers/`` how they are run. Here:

* ``python -m workers`` — a worker for the example sagas (configured from the environment, as
  ``saga worker`` is);
* ``python -m workers.demo`` — the demo: sagas that complete and compensate against the demo
  participants, checked against the participants' own stores (``./run demo``);
* ``python -m workers.dev`` — the server, the demo participants and a worker until Ctrl-C.
"""
