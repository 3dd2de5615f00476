"""Serialise writers of one profile: the gate's reservation and consent changes.

On PostgreSQL the profile row is locked with ``SELECT … FOR NO KEY UPDATE``;
two transactions for the same customer queue behind each other while other
customers proceed. It is the lock an ``UPDATE`` of the row takes, not the
stronger ``FOR UPDATE``: the profile's key never changes, so ingest may
still insert events and orders that point at a locked profile (their
foreign-key check takes ``FOR KEY SHARE``) instead of waiting for a whole
campaign chunk to commit. SQLite has one writer at a time: a no-op ``UPDATE`` of
the row as the transaction's first write takes the database write lock
(``BEGIN IMMEDIATE`` semantics), so later reads in the transaction see
every committed send and the check-then-insert cannot interleave.
"""

from __future__ import annotations

from collections.abc import Iterable

import sqlalchemy as sa

from app.extensions import db
from app.models import Profile
from app.services.bulk_sql import id_in, is_postgresql


def lock_profiles(shop_id: int, profile_ids: Iterable[int]) -> list[int]:
    """Lock these profiles of one shop (in id order, so lockers never deadlock); return the ids found."""
    ids = sorted(set(profile_ids))
    if not ids:
        return []
    table = Profile.__table__
    if is_postgresql():
        stmt = (
            sa.select(table.c.id)
            .where(table.c.shop_id == shop_id, id_in(table.c.id, ids))
            .order_by(table.c.id)
            .with_for_update(key_share=True)
        )
        return db.session.scalars(stmt).all()
    db.session.execute(
        sa.update(table)
        .where(table.c.shop_id == shop_id, id_in(table.c.id, ids))
        .values(id=table.c.id, updated_at=table.c.updated_at)
    )
    found = sa.select(table.c.id).where(table.c.shop_id == shop_id, id_in(table.c.id, ids))
    return db.session.scalars(found).all()
