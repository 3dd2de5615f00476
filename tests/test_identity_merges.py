"""Merges move everything and undo puts everything back, within the plan's window only."""

import contextlib
import datetime as dt
from decimal import Decimal

import pytest
import sqlalchemy as sa

from app.errors import Conflict, NotFound
from app.extensions import db
from app.models import Event, Merge, MergeCandidate, Message, Order, Profile
from app.services import merges
from app.services.consent import record_consent, refresh_states
from app.services.counters import recompute_order_counters
from app.services.engagement import apply_engagement
from app.services.identifiers import Ident
from app.services.profile_rows import dump_profiles
from app.services.resolution import resolve
from tests.helpers import make_shop, statements
from tests.identity_helpers import T0, feed

HOUR = dt.timedelta(hours=1)


def person(shop, n: int, *, orders=1, opens=1, consents=1, messages=1, shopify=None):
    """A profile with rows in every table that points at profiles."""
    idents = [Ident("email", f"p{n}@mail.uk"), Ident("web_client", f"w{n}")]
    if shopify:
        idents.append(Ident("shopify_customer", shopify))
    profile = resolve(shop, idents, source="shopify", seen_at=T0 + n * HOUR)
    for k in range(orders):
        db.session.add(
            Order(
                shop_id=shop.id,
                profile_id=profile.id,
                source="shopify",
                external_id=f"o{n}-{k}",
                channel="pos" if k % 2 else "online",
                location_id="3001" if k % 2 else None,
                placed_at=T0 + (n + k) * HOUR,
                currency="GBP",
                total=Decimal("10.50") * (k + 1),
                email=f"p{n}@mail.uk",
            )
        )
    for k in range(opens):
        at = T0 + (n * 10 + k) * HOUR
        db.session.add(
            Event(
                shop_id=shop.id,
                profile_id=profile.id,
                type="email.opened",
                channel="email",
                source="sendgrid",
                external_id=f"open-{n}-{k}",
                identifiers={"email": [f"p{n}@mail.uk"]},
                occurred_at=at,
            )
        )
        apply_engagement(profile, "email", "opened", at)
    for k in range(consents):
        status = "opted_in" if k % 2 == 0 else "opted_out"
        record_consent(
            profile,
            "email",
            status,
            source="form",
            captured_at=T0 + k * HOUR,
            text="Yes",
            identifier=f"p{n}@mail.uk",
        )
    for _k in range(messages):
        db.session.add(
            Message(shop_id=shop.id, profile_id=profile.id, channel="email", source="campaign", status="sent")
        )
    db.session.flush()
    from app.services.counters import recompute_order_counters

    recompute_order_counters(profile)
    db.session.flush()
    return profile


def test_merge_moves_every_row_and_rebuilds_the_survivors_counters(shop):
    model = shop.model
    a = person(model, 1, orders=2, shopify="71")
    b = person(model, 2, orders=1)
    row = merges.merge_profiles(model, b.id, a.id, reason="manual", actor="owner")
    assert (row.winner_id, row.loser_id) == (a.id, b.id)  # Shopify customer id wins
    db.session.refresh(a)
    assert a.order_count == 3
    assert db.session.get(Profile, b.id).merged_into_id == a.id
    assert db.session.query(Event).filter_by(profile_id=b.id).count() == 0
    assert db.session.query(Event).filter_by(profile_id=a.id, type="profile.merged").count() == 1


def test_merge_then_undo_restores_both_profiles_exactly(shop):
    model = shop.model
    a = person(model, 1, orders=3, opens=2, consents=2, messages=2)
    b = person(model, 2, orders=2, opens=3, consents=1, messages=1)
    before = dump_profiles(shop.id, [a.id, b.id])
    row = merges.merge_profiles(model, a.id, b.id, reason="manual", actor="owner")
    assert dump_profiles(shop.id, [a.id, b.id]) != before
    merges.undo(model, row.id, actor="owner")
    db.session.expire_all()
    assert dump_profiles(shop.id, [a.id, b.id]) == before


def test_undo_after_new_events_keeps_each_new_event_with_the_profile_owning_its_identifiers(shop):
    model = shop.model
    a = person(model, 1)
    b = person(model, 2)
    row = merges.merge_profiles(model, a.id, b.id, reason="manual", actor="owner")
    winner, loser = row.winner_id, row.loser_id
    later = T0 + 100 * HOUR
    ev_loser = feed(
        model, [([Ident("email", f"p{2 if loser == b.id else 1}@mail.uk")], later, "pixel", "new-l")]
    )
    ev_winner = feed(
        model, [([Ident("email", f"p{1 if winner == a.id else 2}@mail.uk")], later, "pixel", "new-w")]
    )
    assert ev_loser[0].id == ev_winner[0].id == winner
    merges.undo(model, row.id, actor="owner")
    assert db.session.query(Event).filter_by(external_id="new-l-0").one().profile_id == loser
    assert db.session.query(Event).filter_by(external_id="new-w-0").one().profile_id == winner


def test_undo_past_the_plans_window_is_refused_with_the_date(db):
    free = make_shop("free.myshopify.com", plan="free").model
    a, b = person(free, 1), person(free, 2)
    row = merges.merge_profiles(free, a.id, b.id, reason="manual", actor="owner", now=T0)
    with pytest.raises(Conflict, match="24 hours") as info:
        merges.undo(free, row.id, actor="owner", now=T0 + dt.timedelta(hours=25))
    assert info.value.code == "undo_window_closed"
    merges.undo(free, row.id, actor="owner", now=T0 + dt.timedelta(hours=23))


def test_pro_plan_undo_window_is_seven_days(shop):
    a, b = person(shop.model, 1), person(shop.model, 2)
    row = merges.merge_profiles(shop.model, a.id, b.id, reason="manual", actor="owner", now=T0)
    assert row.undo_deadline == T0 + dt.timedelta(days=7)


def test_merge_across_shops_is_impossible(shop, other_shop):
    a = person(shop.model, 1)
    b = person(other_shop.model, 2)
    with pytest.raises(NotFound):
        merges.merge_profiles(shop.model, a.id, b.id, reason="manual", actor="owner")
    with pytest.raises(NotFound):
        merges.merge(shop.model, a, b, reason="manual", actor="owner")


def test_undone_merge_is_not_redone_by_resolution(shop):
    model = shop.model
    feed(model, [([Ident("email", "a@mail.uk"), Ident("web_client", "w")], T0, "pixel", "e1")])
    feed(model, [([Ident("shopify_customer", "5"), Ident("email", "a@mail.uk")], T0 + HOUR, "shopify", "e2")])
    assert db.session.query(Merge).count() == 0  # the email simply joined the Shopify customer
    feed(model, [([Ident("shopify_customer", "6"), Ident("email", "b@mail.uk")], T0, "shopify", "e3")])
    b_profile = resolve(model, [Ident("email", "b@mail.uk")], source="x", seen_at=T0)
    a_profile = resolve(model, [Ident("email", "a@mail.uk")], source="x", seen_at=T0)
    row = merges.merge_profiles(model, a_profile.id, b_profile.id, reason="manual", actor="owner")
    merges.undo(model, row.id, actor="owner")
    again = resolve(
        model, [Ident("shopify_customer", "6"), Ident("email", "b@mail.uk")], source="x", seen_at=T0
    )
    assert again.id == b_profile.id
    assert db.session.get(Profile, a_profile.id).merged_into_id is None


def test_undo_twice_is_refused(shop):
    a, b = person(shop.model, 1), person(shop.model, 2)
    row = merges.merge_profiles(shop.model, a.id, b.id, reason="manual", actor="owner")
    merges.undo(shop.model, row.id, actor="owner")
    with pytest.raises(Conflict, match="already undone"):
        merges.undo(shop.model, row.id, actor="owner")


@contextlib.contextmanager
def extra_table(name: str, *columns):
    """A table another feature might add (``id``, ``shop_id`` and ``columns``), dropped afterwards."""
    table = sa.Table(
        name,
        db.metadata,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("shop_id", sa.BigInteger, nullable=False),
        *columns,
    )
    try:
        table.create(db.session.connection())
        yield table
    finally:
        db.session.rollback()
        table.drop(db.session.connection(), checkfirst=True)
        db.session.commit()
        db.metadata.remove(table)


def test_rows_clashing_on_a_unique_key_stay_aside_and_come_back_on_undo(shop):
    """A table another feature adds, unique per profile and tag: the loser's duplicate tag is set aside."""
    with extra_table(
        "test_profile_tags",
        sa.Column("profile_id", sa.BigInteger, sa.ForeignKey("profiles.id"), nullable=False),
        sa.Column("tag", sa.String(20), nullable=False),
        sa.UniqueConstraint("profile_id", "tag"),
    ) as tags:
        a, b = person(shop.model, 1), person(shop.model, 2)
        db.session.execute(
            sa.insert(tags),
            [
                {"shop_id": shop.id, "profile_id": a.id, "tag": "vip"},
                {"shop_id": shop.id, "profile_id": b.id, "tag": "vip"},
                {"shop_id": shop.id, "profile_id": b.id, "tag": "new"},
            ],
        )
        before = dump_profiles(shop.id, [a.id, b.id])
        row = merges.merge_profiles(shop.model, a.id, b.id, reason="manual", actor="owner")
        assert (row.winner_id, row.loser_id) == (a.id, b.id)  # the older profile
        held = db.session.execute(sa.select(tags.c.profile_id, tags.c.tag).order_by(tags.c.tag)).all()
        assert held == [(a.id, "new"), (a.id, "vip")]
        assert [r["tag"] for r in row.snapshot["removed"]["test_profile_tags.profile_id"]] == ["vip"]
        merges.undo(shop.model, row.id, actor="owner")
        db.session.expire_all()
        assert dump_profiles(shop.id, [a.id, b.id]) == before


def test_open_candidates_between_the_two_are_settled_by_the_merge_and_rejected_by_its_undo(shop):
    a, b, c = person(shop.model, 1), person(shop.model, 2), person(shop.model, 3)
    pair = MergeCandidate(shop_id=shop.id, profile_a_id=b.id, profile_b_id=a.id, reason="same email")
    other = MergeCandidate(shop_id=shop.id, profile_a_id=a.id, profile_b_id=c.id, reason="same phone")
    db.session.add_all([pair, other])
    db.session.flush()
    row = merges.merge_profiles(shop.model, a.id, b.id, reason="manual", actor="owner")
    assert (pair.status, pair.decided_by, other.status) == ("merged", "owner", "open")
    assert row.snapshot["candidates"] == [{"id": pair.id, "status": "open"}]
    merges.undo(shop.model, row.id, actor="owner")
    db.session.expire_all()
    assert (db.session.get(MergeCandidate, pair.id).status, other.status) == ("rejected", "open")


def test_the_merged_event_names_the_merge_and_the_merge_names_the_event(shop):
    """PostgreSQL draws both ids in advance; SQLite inserts one then the other: same rows either way."""
    a, b = person(shop.model, 1), person(shop.model, 2)
    first = merges.merge_profiles(shop.model, a.id, b.id, reason="manual", actor="owner")
    c = person(shop.model, 3)
    second = merges.merge_profiles(shop.model, a.id, c.id, reason="manual", actor="owner")
    db.session.expire_all()
    for row in (first, second):
        event = db.session.get(Event, row.merged_event_id)
        assert (event.type, event.external_id, event.properties["merge_id"]) == (
            "profile.merged",
            f"merge-{row.id}",
            row.id,
        )
    assert second.id > first.id and second.merged_event_id > first.merged_event_id
    late = Event(
        shop_id=shop.id, profile_id=a.id, type="page.viewed", source="pixel", external_id="v1", occurred_at=T0
    )
    db.session.add(late)
    db.session.flush()
    assert late.id > second.merged_event_id  # the sequence moved past the ids drawn


def test_a_table_pointing_at_profiles_twice_moves_both_columns_and_comes_back_on_undo(shop):
    """Two profile columns in one table cannot move in one statement: the merge moves them one by one."""
    with extra_table(
        "test_profile_pairs",
        sa.Column("first_id", sa.BigInteger, sa.ForeignKey("profiles.id"), nullable=False),
        sa.Column("second_id", sa.BigInteger, sa.ForeignKey("profiles.id"), nullable=False),
    ) as pairs:
        a, b = person(shop.model, 1, opens=2), person(shop.model, 2, opens=3)
        db.session.execute(
            sa.insert(pairs),
            [
                {"shop_id": shop.id, "first_id": b.id, "second_id": b.id},
                {"shop_id": shop.id, "first_id": a.id, "second_id": b.id},
            ],
        )
        before = dump_profiles(shop.id, [a.id, b.id])
        row = merges.merge_profiles(shop.model, a.id, b.id, reason="manual", actor="owner")
        held = db.session.execute(sa.select(pairs.c.first_id, pairs.c.second_id).order_by(pairs.c.id)).all()
        assert held == [(a.id, a.id), (a.id, a.id)]
        db.session.expire_all()
        assert db.session.get(Profile, a.id).last_engaged_at is not None
        counters = db.session.execute(
            sa.text("SELECT count FROM engagement_counters WHERE profile_id = :p"), {"p": a.id}
        ).scalars()
        assert list(counters) == [5]  # both profiles' opens, counted after the move
        merges.undo(shop.model, row.id, actor="owner")
        db.session.expire_all()
        assert dump_profiles(shop.id, [a.id, b.id]) == before


@pytest.mark.parametrize(
    ("orders", "consents", "theirs", "reads"),
    [
        (0, 0, 0, set()),
        (1, 0, 0, {"orders"}),
        (0, 1, 0, {"consent_records"}),
        (0, 0, 2, {"consent_records"}),  # the merge took the survivor's own states aside
        (1, 1, 2, {"orders", "consent_records"}),
    ],
)
def test_a_merge_recomputes_what_only_the_losers_rows_change_when_it_had_some(
    shop, orders, consents, theirs, reads
):
    """A visitor who bought nothing leaves the survivor's order counters as they were, and one who gave
    no consent to a customer with none its consent states: the merge reads neither, and the survivor
    ends as a full recompute says."""
    model = shop.model
    customer = person(model, 1, orders=2, consents=theirs, shopify="71")
    visitor = person(model, 2, orders=orders, opens=1, consents=consents, messages=0)
    with statements() as sent:
        merges.merge_profiles(model, customer.id, visitor.id, reason="manual", actor="owner")
    selects = [s.replace("\n", " ") for s in sent if s.startswith("SELECT")]
    assert {t for t in ("orders", "consent_records") for s in selects if f"FROM {t} " in s} == reads
    db.session.flush()
    kept = dump_profiles(shop.id, [customer.id])
    recompute_order_counters(customer)
    refresh_states(customer)
    db.session.flush()
    assert dump_profiles(shop.id, [customer.id]) == kept


def test_a_merge_writes_its_row_event_audit_entry_and_counters_in_one_statement(shop):
    """On PostgreSQL the merge row, its ``profile.merged`` event, the audit row and the survivor's
    engagement counters go out together with the ids ``take`` drew (an INSERT per table and an ORM
    object per row before); the returned row is the session's, with nothing to read back."""
    from app.models import AuditLog, EngagementCounter

    model = shop.model
    customer, visitor = person(model, 1, shopify="71"), person(model, 2)
    db.session.flush()
    with statements() as sent:
        row = merges.merge_profiles(model, customer.id, visitor.id, reason="manual", actor="owner")
    tables = ("merges", "events", "audit_log", "engagement_counters")
    inserts = [s for s in sent if any(f"INSERT INTO {t}" in s for t in tables)]
    if db.engine.dialect.name == "postgresql":
        assert len(inserts) == 1 and all(f"INSERT INTO {t}" in inserts[0] for t in tables)
    with statements() as read_back:
        assert db.session.get(Merge, row.id) is row and row.merged_event_id is not None
    assert read_back == []
    db.session.commit()
    db.session.expire_all()
    stored = db.session.get(Merge, row.id)
    assert (stored.winner_id, stored.loser_id, stored.reason) == (customer.id, visitor.id, "manual")
    assert stored.snapshot["loser"]["id"] == visitor.id and stored.undone_at is None
    event = db.session.get(Event, stored.merged_event_id)
    assert (event.type, event.external_id, event.profile_id) == (
        "profile.merged",
        f"merge-{row.id}",
        customer.id,
    )
    entry = db.session.scalars(sa.select(AuditLog).where(AuditLog.action == "profile.merged")).one()
    assert entry.subject_id == str(customer.id) and entry.details["merge_id"] == row.id
    counts = db.session.execute(
        sa.select(EngagementCounter.profile_id, EngagementCounter.channel, EngagementCounter.count).where(
            EngagementCounter.shop_id == model.id
        )
    ).all()
    assert {pid for pid, _, _ in counts} == {customer.id} and sum(n for _, _, n in counts) >= 2
    merges.undo(model, row.id, "owner")
    db.session.commit()
    assert db.session.get(Profile, visitor.id).merged_into_id is None
