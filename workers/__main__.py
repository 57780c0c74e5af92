"""``python -m workers``: a worker for the example sagas until SIGTERM or SIGINT."""

from __future__ import annotations

from sagaloom.client import run
from sagaloom.worker import configure_logging, run_worker
from workers.config import worker_config


def main() -> None:
    """Run one worker process configured from the environment."""
    configure_logging()
    run(run_worker(worker_config()))


if __name__ == "__main__":
    main()
