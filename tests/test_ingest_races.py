"""A unique-key clash with another worker is retried at once, not after the half-minute backoff."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError, OperationalError

from app.extensions import db
from app.models import WebhookDelivery
from app.models.base import utcnow
from app.services.ingest import pixel
from tests.ingest_support import fixture, ishop_fixture, post_pixel
from workers.ingest import RACE_RETRY_SECONDS, backoff_seconds, lost_a_race

ishop = ishop_fixture


class UniqueViolation(Exception):
    """Stands in for the driver's error class (psycopg names it so)."""


def fail_once_with(monkeypatch, error: Exception) -> None:
    real = pixel.plan_pixel_event
    state = {"failed": False}

    def apply(shop, event, delivery_row):
        if not state["failed"]:
            state["failed"] = True
            raise error
        return real(shop, event, delivery_row)

    monkeypatch.setattr(pixel, "plan_pixel_event", apply)


def retry_delay(client, drain) -> dt.timedelta:
    post_pixel(client, fixture("pixel/page_viewed.json"))
    drain()
    db.session.expire_all()
    row = db.session.scalar(sa.select(WebhookDelivery))
    assert (row.status, row.attempts) == ("failed", 1)
    return row.next_attempt_at - utcnow()


def test_a_lost_unique_race_is_retried_within_seconds(client, ishop, drain, monkeypatch):
    race = IntegrityError("INSERT INTO identifiers", {}, UniqueViolation("uq_identifiers_shop_id_kind_value"))
    assert lost_a_race(race)
    fail_once_with(monkeypatch, race)
    assert retry_delay(client, drain) <= dt.timedelta(seconds=RACE_RETRY_SECONDS)


def test_other_failures_keep_the_normal_backoff(app, client, ishop, drain, monkeypatch):
    error = OperationalError("UPDATE profiles", {}, Exception("lock timeout"))
    assert not lost_a_race(error)
    assert not lost_a_race(IntegrityError("INSERT", {}, Exception("NOT NULL constraint failed")))
    fail_once_with(monkeypatch, error)
    with app.app_context():
        base = backoff_seconds(1)
    assert retry_delay(client, drain) > dt.timedelta(seconds=base - 5)
