"""Jobs the worker tests queue (RQ imports a job's function by its dotted path)."""

from __future__ import annotations

import sqlalchemy as sa

from app.extensions import db
from app.models import Profile


def leave_the_session_broken() -> None:
    """Fail a flush and swallow the error: the session now needs a rollback nobody makes."""
    db.session.add(Profile(shop_id=None))
    try:
        db.session.flush()
    except Exception:  # noqa: BLE001, S110 - the point: a job that leaves its session broken
        pass


def count_profiles() -> int:
    """Any job's first read."""
    return db.session.scalar(sa.select(sa.func.count()).select_from(Profile))
