"""Planner statistics: tables that grew since their last ANALYZE are analyzed between units of work."""

from __future__ import annotations

import sqlalchemy as sa

from app.extensions import db
from app.models import Profile, Shop, WebhookDelivery
from app.services import planner_stats
from app.services.ingest.inbox import store_deliveries
from bench.ingest import build_events
from tests.helpers import make_shop
from workers import ingest as worker


def _postgres(db) -> bool:
    return db.engine.dialect.name == "postgresql"


def _last_analyzed(table: str):
    db.session.commit()  # statistics read inside a transaction are a snapshot of its start
    return db.session.scalar(
        sa.text("SELECT last_analyze FROM pg_stat_user_tables WHERE relname = :t"), {"t": table}
    )


def _add_profiles(shop_id: int, n: int) -> None:
    """Insert on one connection and have it report its row counts as it commits (they flush lazily)."""
    with db.engine.connect() as conn:
        conn.execute(sa.insert(Profile), [{"shop_id": shop_id} for _ in range(n)])
        conn.execute(sa.text("SELECT pg_stat_force_next_flush()"))
        conn.commit()


def test_a_table_that_grew_past_the_threshold_is_analyzed_and_then_left_alone(app, db):
    shop = make_shop("stats.myshopify.com")
    if not _postgres(db):
        assert planner_stats.refresh_stale() == []
        return
    _add_profiles(shop.id, 400)
    assert "profiles" in planner_stats.refresh_stale()
    assert _last_analyzed("profiles") is not None
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Profile)) == 400  # nothing lost
    assert "profiles" not in planner_stats.refresh_stale()


def test_a_few_changes_to_a_large_table_do_not_trigger_an_analyze(app, db):
    shop = make_shop("stats.myshopify.com")
    if not _postgres(db):
        return
    _add_profiles(shop.id, 2000)
    planner_stats.refresh_stale()
    first = _last_analyzed("profiles")
    _add_profiles(shop.id, 60)  # above the threshold of 50, below 50 + 10% of 2,000
    assert "profiles" not in planner_stats.refresh_stale()
    assert _last_analyzed("profiles") == first


def test_a_second_analyzer_steps_aside_while_one_is_at_work(app, db):
    shop = make_shop("stats.myshopify.com")
    if not _postgres(db):
        return
    _add_profiles(shop.id, 400)
    with db.engine.connect() as other:
        other.execute(sa.select(sa.func.pg_advisory_xact_lock(planner_stats.LOCK_NAMESPACE, 0)))
        assert planner_stats.refresh_stale() == []
        other.rollback()
    assert "profiles" in planner_stats.refresh_stale()


def test_a_drain_looks_at_the_statistics_after_every_batch(app, db, monkeypatch):
    shop = make_shop("stats.myshopify.com")
    model = db.session.get(Shop, shop.id)
    pixel = [body for kind, body in build_events(300, seed=5) if kind == "pixel"]
    store_deliveries(model, "pixel", [(body["name"], body["id"], body) for body in pixel])
    db.session.commit()
    looks = []
    monkeypatch.setattr(planner_stats, "refresh_stale_now_and_then", lambda: looks.append(1) or [])
    monkeypatch.setattr(worker, "batch_size", lambda: 100)
    assert worker.drain_shop(shop.id) == len(pixel)
    assert set(db.session.scalars(sa.select(WebhookDelivery.status))) == {"processed"}
    assert len(looks) == len(pixel) // 100 + 1
