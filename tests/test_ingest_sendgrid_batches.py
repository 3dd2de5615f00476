"""SendGrid batches by size, not by count: a post of thousands of events is stored whole, cheaply.

SendGrid posts its events when a batch reaches its size limit (or every 30 seconds), so one
post may hold several thousand small events. Refusing a post over some count lost all of them,
the unsubscribes included: SendGrid resent it for 72 hours and then dropped it.
"""

from __future__ import annotations

import json

import sqlalchemy as sa

from app.extensions import db
from app.models import WebhookDelivery
from app.services.consent import channel_states
from tests.helpers import statements
from tests.ingest_support import ishop_fixture, profile_of, sendgrid_post
from workers.ingest import drain_shop

ishop = ishop_fixture
BODY_LIMIT = 1024 * 1024


def delivered(n: int) -> dict:
    return {
        "email": f"r{n}@shopper.test",
        "timestamp": 1791100000 + n,
        "event": "delivered",
        "sg_event_id": f"d{n}",
    }


def test_a_sendgrid_post_of_more_than_a_thousand_events_stores_each_and_applies_its_unsubscribe(
    client, ishop
):
    events = [delivered(n) for n in range(1499)]
    events.append({**delivered(0), "event": "unsubscribe", "sg_event_id": "u0", "timestamp": 1791102000})
    answer = sendgrid_post(client, ishop.domain, events)
    assert answer.status_code == 200, answer.get_data(as_text=True)
    assert answer.get_json() == {"accepted": 1500, "duplicates": 0}
    drain_shop(ishop.id)  # what the request left to the workers (embedded mode works a batch or two)
    statuses = db.session.scalars(sa.select(WebhookDelivery.status)).all()
    assert len(statuses) == 1500 and set(statuses) == {"processed"}
    assert channel_states(profile_of(ishop, "email", "r0@shopper.test"))["email"] == "opted_out"


def test_a_five_thousand_event_sendgrid_post_fits_the_body_limit_and_is_stored_in_a_few_statements(
    client, ishop, monkeypatch
):
    import workers.ingest

    queued: list = []
    monkeypatch.setattr(workers.ingest, "enqueue_deliveries", queued.extend)  # a worker drains it later

    def stored_with(n: int, prefix: str) -> int:
        events = [{**delivered(i), "sg_event_id": f"{prefix}{i}"} for i in range(n)]
        assert len(json.dumps(events)) < BODY_LIMIT
        with statements() as sent:
            answer = sendgrid_post(client, ishop.domain, events)
        assert answer.status_code == 200, answer.get_data(as_text=True)
        assert answer.get_json()["accepted"] == n
        return len(sent)

    few, many = stored_with(10, "a"), stored_with(5000, "b")
    # One insert for the whole batch (SQLite pages a long one): nowhere near a statement per event.
    assert many <= few + 10, (few, many)
    pending = db.session.scalar(
        sa.select(sa.func.count()).select_from(WebhookDelivery).where(WebhookDelivery.status == "pending")
    )
    assert pending == 5010 and set(queued) == {ishop.id}
