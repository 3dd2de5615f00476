"""A throwaway PostgreSQL database per benchmark run, dropped at the end."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import sqlalchemy as sa


def scratch_database(base_url: str, prefix: str = "c360_bench") -> tuple[str, Callable[[], None]]:
    """Create ``<prefix>_<random>`` beside ``base_url``; return its URL and a function that drops it."""
    url = sa.engine.make_url(base_url.replace("postgresql://", "postgresql+psycopg://", 1))
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return url.set(database=name).render_as_string(hide_password=False), drop
