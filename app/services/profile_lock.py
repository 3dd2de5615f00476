"""Serialise writers of one profile: the gate's reservation and consent changes.

A writer that starts from a profile id locks it with ``lock_live``: the profile
and the one it survives as today, re-read once the locks are held. A merge
that commits while the writer waits has moved the profile's consent, sends and
counters to the survivor, so the write follows it there instead of landing on
the merged-away profile (an unsubscribe that the survivor never saw).

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
from app.services.identifiers import live_profile
from app.tenancy import get_scoped


def lock_profiles(shop_id: int, profile_ids: Iterable[int], *, live_only: bool = False) -> list[int]:
    """Lock these profiles of one shop (in id order, so lockers never deadlock); return the ids found.

    With ``live_only``, the ids of those not merged away once the lock is held: a merge that
    commits while we wait is seen (PostgreSQL checks a row it waited for again), and the
    merged-away profile is left out, unlocked.
    """
    ids = sorted(set(profile_ids))
    if not ids:
        return []
    table = Profile.__table__
    where = [table.c.shop_id == shop_id, id_in(table.c.id, ids)]
    if live_only:
        where.append(table.c.merged_into_id.is_(None))
    if is_postgresql():
        stmt = sa.select(table.c.id).where(*where).order_by(table.c.id).with_for_update(key_share=True)
        return db.session.scalars(stmt).all()
    db.session.execute(
        sa.update(table)
        .where(table.c.shop_id == shop_id, id_in(table.c.id, ids))
        .values(id=table.c.id, updated_at=table.c.updated_at)
    )
    return db.session.scalars(sa.select(table.c.id).where(*where).order_by(table.c.id)).all()


def lock_live(shop_id: int, profile_id: int) -> Profile | None:
    """Lock the profile and the one it survives as; return that one, read under the locks.

    The first round locks the profile and the survivor the session already knows of
    together, in id order as merges and undos lock a pair: locking the profile first and
    its survivor after would deadlock with an undo holding the survivor (the lower id)
    and waiting for the profile. The merge chain is read again after each round of
    locks: a merge that committed while we waited shows there, and its survivor is
    locked in turn. None when the shop has no such profile.
    """
    known = live_profile(get_scoped(Profile, shop_id, profile_id))  # no read when the session holds it
    locked: set[int] = set()
    wanted = {profile_id} | ({known.id} if known is not None else set())
    while wanted - locked:
        if not lock_profiles(shop_id, wanted - locked) and not locked:
            return None
        locked |= wanted
        live = live_profile(get_scoped(Profile, shop_id, profile_id, fresh=True), fresh=True)
        if live is None:
            return None
        wanted = {profile_id, live.id}
    return live
