"""Bulk campaign sends keep every rule of the single send: gate, message log, outbox."""

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
    sends = dict(
        db.session.execute(
            sa.select(Message.profile_id, sa.func.count())
            .where(Message.status == "sent")
            .group_by(Message.profile_id)
        ).all()
    )
    assert sends == {fresh.id: 1, capped.id: 3}
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Event)) == 0  # a send is no event
    assert db.session.scalar(sa.select(sa.func.count()).select_from(EngagementCounter)) == 0


def test_send_many_twice_stops_at_the_cap(db, shop):
    profile = make_profile(shop.id)
    results = [
        send_many(shop.model, [profile.id], "whatsapp", campaign_id=f"w{i}", now=NOON) for i in range(3)
    ]
    assert [r.sent for r in results] == [1, 1, 0]
    assert results[2].reasons == {"channel_cap_reached:whatsapp:2/2": 1}
    sent = sa.select(sa.func.count()).where(Message.channel == "whatsapp", Message.status == "sent")
    assert db.session.scalar(sent) == 2


def _log(db, campaign_id: str, names: dict[int, str]) -> list[tuple]:
    """Each attempt of a campaign with its outbox item.

    What differs between two audiences by construction is left out or normalised: profile and
    message ids, the campaign id, the audience's tag in email addresses (``<tag>-fresh@…``).
    """
    rows = db.session.scalars(
        sa.select(Message).where(Message.campaign_id == campaign_id).order_by(Message.profile_id)
    ).all()
    out = []
    for m in rows:
        item = db.session.scalar(sa.select(OutboxItem).where(OutboxItem.message_id == m.id))
        recipient = (
            item and item.recipient.replace(f"profile:{m.profile_id}", "profile:<id>").split("-", 1)[-1]
        )
        same = {"message_id", "campaign_id"}
        out.append(
            (
                names[m.profile_id],
                (m.channel, m.source, m.status, m.reason, m.retry_at, m.local_day, m.created_at, m.sent_at),
                item and (item.channel, recipient, {k: v for k, v in item.payload.items() if k not in same}),
            )
        )
    return out


def test_send_many_writes_what_send_message_writes_for_every_outcome(db, shop):
    def audience(tag: str, phone: str) -> dict[int, str]:
        profiles = {
            "fresh": make_profile(shop.id, f"{tag}-fresh@shopper.test", None),
            "sydney": make_profile(shop.id, f"{tag}-sydney@shopper.test", None, timezone="Australia/Sydney"),
            "no consent": make_profile(shop.id, f"{tag}-none@shopper.test", f"{phone}1", consents=("email",)),
            "capped": make_profile(shop.id, f"{tag}-capped@shopper.test", f"{phone}2"),
        }
        send_message(shop.model, profiles["capped"].id, "sms", "manual", now=NOON)
        return {p.id: name for name, p in profiles.items()}

    single, bulk = audience("single", "+44791100011"), audience("bulk", "+44791100022")
    for channel in ("sms", "push", "email"):
        for pid in single:
            send_message(shop.model, pid, channel, "campaign", campaign_id=f"one-{channel}", now=NOON)
        result = send_many(shop.model, list(bulk), channel, campaign_id=f"many-{channel}", now=NOON, chunk=3)
        one, many = _log(db, f"one-{channel}", single), _log(db, f"many-{channel}", bulk)
        for a, b in zip(sorted(many, key=str), sorted(one, key=str), strict=True):
            assert a == b, channel
        statuses = [row[1][2] for row in many]
        no_address = sum(row[1][3] == f"no_address:{channel}" for row in many)
        assert (result.sent, result.blocked + result.failed, result.failed) == (
            statuses.count("sent"),
            statuses.count("blocked"),
            no_address,
        )
    reasons = {row[1][3] for row in _log(db, "many-sms", bulk)}
    assert reasons == {"quiet_hours", "no_address:sms", "no_consent:sms", "channel_cap_reached:sms:1/1"}
    assert {row[2][1] for row in _log(db, "many-push", bulk) if row[2]} == {"profile:<id>"}
    outbox = db.session.execute(
        sa.select(Message.profile_id, OutboxItem.channel).join(
            OutboxItem, OutboxItem.message_id == Message.id
        )
    )
    by_name = sorted(
        (names[pid], channel) for pid, channel in outbox for names in (single, bulk) if pid in names
    )
    assert by_name[::2] == by_name[1::2]  # each (name, channel) handed over once for each audience
