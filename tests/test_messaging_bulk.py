"""Bulk campaign sends keep every rule of the single send: gate, log, events, counters, outbox."""

from __future__ import annotations

import sqlalchemy as sa

from app.models import EngagementCounter, Event, Message, OutboxItem
from app.services.consent import unsubscribe_all
from app.services.messaging import send_message
from app.services.messaging_bulk import send_many
from tests.gate_helpers import NOON, make_profile


def test_send_many_gates_each_profile_and_writes_what_send_message_writes(db, shop):
    fresh = make_profile(shop.id, "fresh@shopper.test", None)
    capped = make_profile(shop.id, "capped@shopper.test", None)
    gone = make_profile(shop.id, "gone@shopper.test", None)
    no_consent = make_profile(shop.id, "quiet@shopper.test", None, consents=("sms",))
    for _ in range(3):
        send_message(shop.model, capped.id, "email", "manual", now=NOON)
    unsubscribe_all(gone, source="api", captured_at=NOON)
    db.session.commit()
    ids = [fresh.id, capped.id, gone.id, no_consent.id]
    result = send_many(shop.model, ids, "email", campaign_id="bulk", now=NOON, chunk=2)
    assert (result.sent, result.blocked, result.decisions) == (1, 3, 4)
    assert result.reasons == {
        "sent": 1,
        "global_cap_reached:3/3": 1,
        "global_unsubscribe": 1,
        "no_consent:email": 1,
    }
    log = dict(
        db.session.execute(
            sa.select(Message.profile_id, Message.status).where(Message.campaign_id == "bulk")
        ).all()
    )
    assert log == {fresh.id: "sent", capped.id: "blocked", gone.id: "blocked", no_consent.id: "blocked"}
    assert (
        db.session.scalar(
            sa.select(OutboxItem.recipient).where(
                OutboxItem.message_id.in_(sa.select(Message.id).where(Message.campaign_id == "bulk"))
            )
        )
        == "fresh@shopper.test"
    )
    assert (
        db.session.scalar(sa.select(sa.func.count()).select_from(Event).where(Event.profile_id == fresh.id))
        == 1
    )
    counters = dict(
        db.session.execute(sa.select(EngagementCounter.profile_id, EngagementCounter.count)).all()
    )
    assert counters == {fresh.id: 1, capped.id: 3}


def test_send_many_twice_stops_at_the_cap(db, shop):
    profile = make_profile(shop.id)
    results = [
        send_many(shop.model, [profile.id], "whatsapp", campaign_id=f"w{i}", now=NOON) for i in range(3)
    ]
    assert [r.sent for r in results] == [1, 1, 0]
    assert results[2].reasons == {"channel_cap_reached:whatsapp:2/2": 1}
    counter = db.session.scalar(
        sa.select(EngagementCounter.count).where(EngagementCounter.channel == "whatsapp")
    )
    assert counter == 2
