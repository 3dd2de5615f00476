"""Round trips per signal: a known visitor's page view is one identifier read, not a graph walk."""

from __future__ import annotations

import sqlalchemy as sa

from app.extensions import db
from app.models import Event, Shop, WebhookDelivery
from app.services import shop_lock
from app.services.ingest.pixel import apply_pixel_event
from tests.helpers import statements
from tests.ingest_support import SIGNALS, fixture, ishop_fixture, post_pixel, profile_of

ishop = ishop_fixture


def page_view(event_id: str, at: str) -> dict:
    event = fixture("pixel/page_viewed.json")
    event.update(id=event_id, timestamp=at)
    return event


def test_known_visitor_page_view_reads_its_identifier_and_profile_once(client, ishop, drain):
    post_pixel(client, page_view("pv-1", "2026-10-01T08:00:00Z"))
    drain()
    known = profile_of(ishop, "web_client", "c-phone-sarah")
    db.session.commit()
    shop = db.session.get(Shop, ishop.id)
    shop_lock.hold([shop.id])  # as a drain's batch holds it (taken once per batch, not per signal)
    with statements() as seen:
        apply_pixel_event(shop, page_view("pv-2", "2026-10-01T09:00:00Z"), None)
        db.session.flush()
    reads = [s for s in seen if s.lstrip().upper().startswith("SELECT")]
    # One read for identifier and owner; the event insert; the last-seen updates of both.
    assert len(reads) == 1 and "profiles" in reads[0], seen
    assert len(seen) <= 4, seen
    db.session.commit()
    event = db.session.scalar(sa.select(Event).where(Event.external_id == "pv-2"))
    assert event.profile_id == known.id


def test_a_batch_is_marked_processed_in_one_statement(client, ishop, drain):
    batch = [page_view(f"pv-{i}", f"2026-10-01T0{i}:00:00Z") for i in range(1, 6)]
    post_pixel(client, batch)
    drain()
    rows = list(db.session.scalars(sa.select(WebhookDelivery).order_by(WebhookDelivery.id)))
    assert [(r.status, r.attempts) for r in rows] == [("processed", 1)] * 5
    assert all(r.processed_at is not None and r.last_error is None for r in rows)


def test_a_pixel_batch_is_stored_in_one_insert_and_repeats_are_answered_as_duplicates(client, ishop, drain):
    batch = [page_view("pv-1", "2026-10-01T08:00:00Z"), page_view("pv-2", "2026-10-01T09:00:00Z")]
    batch.append(page_view("pv-1", "2026-10-01T08:00:00Z"))  # the same event twice in one request
    with statements() as seen:
        first = post_pixel(client, batch)
    inserts = [s for s in seen if s.lstrip().upper().startswith("INSERT INTO WEBHOOK_DELIVERIES")]
    assert len(inserts) == 1
    assert first.get_json() == {"accepted": 2, "duplicates": 1}
    again = post_pixel(client, batch[1:] + [page_view("pv-3", "2026-10-01T10:00:00Z")])
    assert again.get_json() == {"accepted": 1, "duplicates": 2}
    drain()
    ids = set(db.session.scalars(sa.select(Event.external_id).where(SIGNALS)))
    assert ids == {"pv-1", "pv-2", "pv-3"}
    statuses = set(db.session.scalars(sa.select(WebhookDelivery.status)))
    assert statuses == {"processed"}
