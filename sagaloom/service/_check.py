"""Imported first by ``sagaloom.service``: a clear error when its extra is not installed."""

from importlib.util import find_spec

__all__ = ["needs_the_extra"]

needs_the_extra = ("sqlalchemy", "aiosqlite", "starlette")
"""What ``pip install 'sagaloom[service]'`` adds (asyncpg too, for PostgreSQL)."""

for _needed in needs_the_extra:
    if find_spec(_needed) is None:
        raise ImportError(
            f"sagaloom.service needs its extra ({_needed} is missing): "
            "pip install 'sagaloom[service]'"
        )
