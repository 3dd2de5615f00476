"""Statements sent together (one round trip on PostgreSQL) answer as if run one by one."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from app.extensions import db
from app.models import AuditLog, MergeCandidate
from app.services.bulk_sql import OneTrip

AUDIT = AuditLog.__table__
SHOP = sa.bindparam("t_shop")


def _log(shop_id: int, actor: str, action: str) -> int:
    return db.session.scalar(
        sa.insert(AUDIT).values(shop_id=shop_id, actor=actor, action=action, details={}).returning(AUDIT.c.id)
    )


def test_each_part_gets_its_own_rows_typed_as_its_columns_and_sees_the_database_as_before(shop):
    kept, changed = _log(shop.id, "keep", "a"), _log(shop.id, "owner", "b")
    other = _log(shop.id, "bot", "c")
    trip = OneTrip(
        [
            sa.select(AUDIT.c.id, AUDIT.c.action, AUDIT.c.created_at).where(AUDIT.c.shop_id == SHOP),
            sa.update(AUDIT)
            .where(AUDIT.c.shop_id == SHOP, AUDIT.c.actor == "owner")
            .values(action="renamed")
            .returning(AUDIT.c.id, AUDIT.c.action),
            sa.select(sa.select(sa.func.max(AUDIT.c.id)).scalar_subquery().label("top")),
            sa.delete(MergeCandidate.__table__)
            .where(MergeCandidate.shop_id == SHOP)
            .returning(MergeCandidate.id),
        ]
    )
    before, updated, (top,), deleted = trip.run({"t_shop": shop.id})
    assert sorted((r["id"], r["action"]) for r in before) == [(kept, "a"), (changed, "b"), (other, "c")]
    assert all(isinstance(r["created_at"], dt.datetime) and r["created_at"].tzinfo for r in before)
    assert updated == [{"id": changed, "action": "renamed"}]
    assert top == {"top": other}
    assert deleted == []
    assert db.session.scalar(sa.select(AUDIT.c.action).where(AUDIT.c.id == changed)) == "renamed"
    # Built once, run again with other values.
    assert trip.run({"t_shop": shop.id + 1000})[:2] == [[], []]


def test_two_parts_writing_one_table_are_refused():
    with pytest.raises(ValueError, match="same table"):
        OneTrip([sa.update(AUDIT).values(action="x"), sa.delete(AUDIT)])
