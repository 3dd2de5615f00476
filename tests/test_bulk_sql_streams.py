"""Long inserts read their rows once, as they go: a history backfill never holds a row dict per identifier."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from app.extensions import db
from app.models import Profile
from app.services import bulk_sql

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def _rows(shop_id: int, n: int, taken: list[int]):
    for i in range(n):
        taken.append(i)
        yield {"shop_id": shop_id, "first_seen_at": T0 + dt.timedelta(minutes=i), "last_seen_at": T0}


def test_insert_with_ids_takes_a_generator_and_its_count_and_returns_the_ids_in_row_order(shop, monkeypatch):
    monkeypatch.setattr(bulk_sql, "SQLITE_CHUNK", 7)  # several chunks on SQLite
    taken: list[int] = []
    ids = bulk_sql.insert_with_ids(Profile.__table__, _rows(shop.id, 30, taken), 30)
    assert taken == list(range(30))  # each row read once
    stored = dict(
        db.session.execute(sa.select(Profile.id, Profile.first_seen_at).where(Profile.id.in_(ids))).all()
    )
    assert [stored[i] for i in ids] == [T0 + dt.timedelta(minutes=i) for i in range(30)]


def test_copy_rows_writes_every_row_of_a_generator_and_nothing_for_an_empty_one(shop, monkeypatch):
    monkeypatch.setattr(bulk_sql, "SQLITE_CHUNK", 4)
    bulk_sql.copy_rows(Profile.__table__, iter(()))
    taken: list[int] = []
    bulk_sql.copy_rows(Profile.__table__, _rows(shop.id, 10, taken))
    assert taken == list(range(10))
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Profile)) == 10
