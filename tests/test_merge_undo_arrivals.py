"""Undo after rows arrived, undo order, and the stage a merge and its undo leave.

What reached a survivor after its merge goes back to the side owning its
identifiers, however its source wrote them; an opt-out nobody can attribute
stays with both; merges come apart newest first; and the stage, first and last
seen times follow what each side holds.
"""

import datetime as dt
from decimal import Decimal

import pytest

from app.errors import Conflict
from app.extensions import db
from app.models import Event, Order, Profile
from app.models.base import utcnow
from app.services import merge_candidates, merges, messaging_api
from app.services.consent import channel_states, record_consent, unsubscribe_all
from app.services.counters import recompute_order_counters
from app.services.identifiers import Ident
from app.services.lifecycle import refresh_lifecycle
from app.services.resolution import resolve

NOW = utcnow()
DAY = dt.timedelta(days=1)


def buyer(shop, n: int, *, days_ago: int = 10, shopify: str | None = None) -> Profile:
    """A customer with an email, a UK mobile, email and SMS consent and one order ``days_ago``."""
    idents = [Ident("email", f"b{n}@mail.uk"), Ident("phone", f"+4477009006{n:02d}")]
    if shopify:
        idents.append(Ident("shopify_customer", shopify))
    at = NOW - days_ago * DAY
    profile = resolve(shop, idents, source="shopify", seen_at=at)
    for channel in ("email", "sms"):
        record_consent(profile, channel, "opted_in", source="checkout", captured_at=at, text="Yes")
    _order(shop, profile, f"o{n}", at, email=f"b{n}@mail.uk")
    return profile


def _order(shop, profile, external_id, at, *, email=None, phone=None, total="20.00"):
    db.session.add(
        Order(
            shop_id=shop.id,
            profile_id=profile.id,
            source="shopify",
            external_id=external_id,
            channel="online",
            placed_at=at,
            currency="GBP",
            total=Decimal(total),
            email=email,
            phone=phone,
        )
    )
    db.session.flush()
    recompute_order_counters(profile)
    refresh_lifecycle(shop, profile, NOW)
    db.session.flush()


def _merge(shop, a, b):
    row = merges.merge_profiles(shop, a.id, b.id, reason="manual", actor="owner")
    winner, loser = db.session.get(Profile, row.winner_id), db.session.get(Profile, row.loser_id)
    return row, winner, loser


def test_an_api_unsubscribe_during_a_merge_goes_back_to_the_side_it_named(shop):
    row, winner, loser = _merge(shop.model, buyer(shop.model, 1, shopify="71"), buyer(shop.model, 2))
    messaging_api.unsubscribe_from_request(shop.model, {"identifier": "email:B2@Mail.uk"})
    merges.undo(shop.model, row.id, actor="owner")
    db.session.expire_all()
    assert (loser.globally_unsubscribed, winner.globally_unsubscribed) == (True, False)
    assert channel_states(winner)["email"] == "opted_in"


def test_an_opt_out_naming_nobody_during_a_merge_stays_with_both_sides(shop):
    """A support agent unsubscribed the merged customer: either person may have asked; neither is messaged."""
    row, winner, loser = _merge(shop.model, buyer(shop.model, 1), buyer(shop.model, 2))
    unsubscribe_all(winner, source="console", captured_at=NOW)
    merges.undo(shop.model, row.id, actor="owner")
    db.session.expire_all()
    assert (winner.globally_unsubscribed, loser.globally_unsubscribed) == (True, True)


@pytest.mark.parametrize("written", ["07700 900602", "sms:07700900602", "phone:+44 7700 900602"])
def test_a_consent_naming_a_phone_as_its_source_wrote_it_goes_back_to_the_side_holding_it(shop, written):
    row, winner, loser = _merge(shop.model, buyer(shop.model, 1, shopify="71"), buyer(shop.model, 2))
    record_consent(winner, "sms", "opted_out", source="shopify", captured_at=NOW, identifier=written)
    merges.undo(shop.model, row.id, actor="owner")
    db.session.expire_all()
    assert (channel_states(loser)["sms"], channel_states(winner)["sms"]) == ("opted_out", "opted_in")


def test_an_order_naming_the_losers_phone_in_national_format_goes_back_with_its_counters(shop):
    row, winner, loser = _merge(shop.model, buyer(shop.model, 1, shopify="71"), buyer(shop.model, 2))
    _order(shop.model, winner, "guest-1", NOW - DAY, phone="07700 900602", total="7.00")
    merges.undo(shop.model, row.id, actor="owner")
    db.session.expire_all()
    assert db.session.query(Order).filter_by(external_id="guest-1").one().profile_id == loser.id
    assert (loser.order_count, loser.lifetime_spend, winner.order_count) == (2, Decimal("27.00"), 1)


def test_undo_gives_each_side_the_seen_times_and_stage_of_what_it_holds(shop):
    row, winner, loser = _merge(shop.model, buyer(shop.model, 1, shopify="71"), buyer(shop.model, 2))
    resolve(shop.model, [Ident("email", "b1@mail.uk")], source="pixel", seen_at=NOW - DAY)
    db.session.add(
        Event(
            shop_id=shop.id,
            profile_id=winner.id,
            type="page.viewed",
            source="pixel",
            external_id="late-view",
            identifiers={"email": ["b1@mail.uk"]},
            occurred_at=NOW - DAY,
        )
    )
    _order(shop.model, winner, "late-order", NOW - DAY, email="b1@mail.uk")
    merges.undo(shop.model, row.id, actor="owner")
    db.session.expire_all()
    assert (winner.order_count, winner.lifecycle_stage) == (2, "loyal")
    assert winner.last_seen_at == NOW - DAY
    assert (loser.order_count, loser.lifecycle_stage) == (1, "converted")


def test_a_merge_gives_the_survivor_the_stage_of_both_and_undo_takes_it_back(shop):
    a, b = buyer(shop.model, 1), buyer(shop.model, 2)
    assert (a.lifecycle_stage, b.lifecycle_stage) == ("converted", "converted")
    changes = db.session.query(Event).filter_by(type="lifecycle.changed").count()
    row, winner, _loser = _merge(shop.model, a, b)
    assert (winner.order_count, winner.lifecycle_stage) == (2, "loyal")
    merges.undo(shop.model, row.id, actor="owner")
    db.session.expire_all()
    assert (a.lifecycle_stage, b.lifecycle_stage) == ("converted", "converted")
    assert db.session.query(Event).filter_by(type="lifecycle.changed").count() == changes


def test_merges_into_one_survivor_come_apart_newest_first(shop):
    """Undo puts the survivor back as it was just before its merge, which a later merge's rows are not
    part of: undoing the earlier one first is refused, says which to undo, and no list offers it."""
    w, first, second = buyer(shop.model, 1, shopify="71"), buyer(shop.model, 2), buyer(shop.model, 3)
    m1 = merges.merge_profiles(shop.model, w.id, first.id, reason="manual", actor="owner")
    m2 = merges.merge_profiles(shop.model, w.id, second.id, reason="manual", actor="owner")
    with pytest.raises(Conflict, match=f"undo merge {m2.id} first") as refused:
        merges.undo(shop.model, m1.id, actor="owner")
    assert refused.value.code == "undo_later_merge_first"
    listed = {m["id"]: m for m in merge_candidates.merges_json(shop.model, [m2, m1])}
    assert (listed[m1.id]["undoable"], listed[m2.id]["undoable"]) == (False, True)
    assert listed[m1.id]["undo_refused"]["code"] == "undo_later_merge_first"
    merges.undo(shop.model, m2.id, actor="owner")
    merges.undo(shop.model, m1.id, actor="owner")
    db.session.expire_all()
    assert [p.order_count for p in (w, first, second)] == [1, 1, 1]
    assert [p.lifetime_spend for p in (w, first, second)] == [Decimal("20.00")] * 3


def test_a_merge_whose_survivor_was_merged_away_since_is_not_offered_for_undo(shop):
    a, b, c = buyer(shop.model, 1), buyer(shop.model, 2), buyer(shop.model, 3, shopify="73")
    m1 = merges.merge_profiles(shop.model, a.id, b.id, reason="manual", actor="owner")
    merges.merge_profiles(shop.model, m1.winner_id, c.id, reason="manual", actor="owner")
    assert merge_candidates.merge_json(m1)["undoable"] is False
    assert not merges.can_undo(m1)


def test_messages_sent_during_a_merge_go_back_with_the_address_they_went_to(shop):
    """Mail sent to the merged profile went to the loser's opted-in address; after undo it stayed
    on the survivor: the loser's daily cap let three more through, and an unsubscribe from that
    mail (routed by its message) opted out the wrong person."""
    from app.models import Message
    from app.services import gate, messaging

    plain = resolve(
        shop.model,
        [Ident("email", "va@mail.uk"), Ident("shopify_customer", "94")],
        source="shopify",
        seen_at=NOW - DAY,
    )
    subscribed = resolve(shop.model, [Ident("email", "vb@mail.uk")], source="shopify", seen_at=NOW - DAY)
    record_consent(
        subscribed,
        "email",
        "opted_in",
        source="checkout",
        captured_at=NOW - DAY,
        text="Yes",
        identifier="email:vb@mail.uk",
    )
    db.session.commit()
    row, winner, loser = _merge(shop.model, plain, subscribed)
    db.session.commit()
    sent = [messaging.send_message(shop.model, winner.id, "email", "manual", now=NOW) for _ in range(3)]
    assert all(m.status == "sent" for m in sent)
    merges.undo(shop.model, row.id, actor="owner")
    db.session.commit()
    db.session.expire_all()
    assert {db.session.get(Message, m.id).profile_id for m in sent} == {subscribed.id}
    assert gate.check(shop.model, subscribed.id, "email", NOW).reason == "global_cap_reached:3/3"
    assert gate.check(shop.model, plain.id, "email", NOW).reason == "no_consent:email"


def _stage_changes(profile) -> list[tuple[str, str]]:
    rows = db.session.query(Event).filter_by(profile_id=profile.id, type="lifecycle.changed")
    return [(e.properties["from"], e.properties["to"]) for e in rows.order_by(Event.occurred_at, Event.id)]


def test_undo_takes_away_the_stage_changes_of_the_merged_person_and_each_timeline_ends_at_its_stage(shop):
    """While merged, the other side's order made the survivor loyal (a change on its timeline);
    undo gave the survivor back its own stage but left that change, so the timeline contradicted
    the badge. The merged person's changes go; a side whose stage moved since says so once."""
    a = resolve(
        shop.model, [Ident("shopify_customer", "71"), Ident("email", "a1@mail.uk")], source="t", seen_at=NOW
    )
    b = resolve(shop.model, [Ident("email", "b2@mail.uk")], source="t", seen_at=NOW)
    for p in (a, b):
        refresh_lifecycle(shop.model, p, NOW)
    before = {p.id: _stage_changes(p) for p in (a, b)}
    row, winner, loser = _merge(shop.model, a, b)
    _order(shop.model, winner, "late-order", NOW - DAY, email="b2@mail.uk")  # the loser's, while merged
    assert _stage_changes(winner)[-1] == ("new", "converted")
    merges.undo(shop.model, row.id, actor="owner")
    db.session.expire_all()
    assert (winner.id, winner.lifecycle_stage, loser.lifecycle_stage) == (a.id, "new", "converted")
    assert _stage_changes(winner) == before[winner.id]
    assert _stage_changes(loser) == [*before[loser.id], ("new", "converted")]


def test_undo_after_a_stage_moved_by_time_gives_back_the_stage_and_the_next_run_moves_it_once(shop):
    """Nothing arrived while merged, but the nightly job moved the merged person to at risk: undo
    gives each side back exactly the stage it had (the merged person's change goes), and the next
    run moves it, with one change on its timeline."""
    a = buyer(shop.model, 1, days_ago=29, shopify="71")
    b = resolve(shop.model, [Ident("email", "plain@mail.uk")], source="t", seen_at=NOW)
    refresh_lifecycle(shop.model, b, NOW)
    row, winner, _loser = _merge(shop.model, a, b)
    later = NOW + 2 * DAY
    refresh_lifecycle(shop.model, winner, later)  # 31 quiet days: at risk
    assert winner.lifecycle_stage == "at_risk"
    row.undo_deadline = later + DAY
    merges.undo(shop.model, row.id, actor="owner", now=later + DAY / 24)
    db.session.expire_all()
    assert (a.lifecycle_stage, _stage_changes(a)) == ("converted", [("new", "converted")])
    refresh_lifecycle(shop.model, a, later + DAY)
    assert _stage_changes(a) == [("new", "converted"), ("converted", "at_risk")]
