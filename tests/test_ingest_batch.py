"""Drain jobs: one queued per shop, a whole batch applied in bulk, with the outcome of row by row."""

from __future__ import annotations

import json
import uuid

import pytest
import sqlalchemy as sa

from app.extensions import db
from app.jobs import get_queue
from app.models import (
    ConsentRecord,
    ConsentState,
    EngagementCounter,
    Event,
    Identifier,
    Order,
    Profile,
    WebhookDelivery,
)
from app.services.ingest.inbox import store_deliveries, store_delivery
from bench.ingest import build_events
from tests.helpers import make_shop, planner_stats_held, statements
from tests.ingest_support import SIGNALS, fixture, ishop_fixture, post_pixel
from workers import ingest as worker

ishop = ishop_fixture


def store_mix(shop, n: int = 240, seed: int = 3) -> None:
    """The benchmark's mix (page views, email events, orders, consents), plus rows applied on their own."""
    for index, (kind, body) in enumerate(build_events(n, seed=seed)):
        if kind == "pixel":
            store_deliveries(shop, "pixel", [(body["name"], body["id"], body)])
        elif kind == "sendgrid":
            if index % 17 == 0:
                body["event"] = "unsubscribe"  # an opt-out: applied on its own, in its place
            store_deliveries(shop, "sendgrid", [(body["event"], body["sg_event_id"], body)])
        else:
            topic = "orders/create" if kind == "order" else "customers/email_marketing_consent_update"
            if kind == "order" and index % 3 == 0:  # an older API version: consent inside the customer
                body["customer"]["email_marketing_consent"] = {
                    "state": "subscribed" if index % 2 else "unsubscribed",
                    "consent_updated_at": body["created_at"],
                }
            store_delivery(shop, "shopify", topic, f"wh-{index}", json.dumps(body).encode())
            if kind == "consent" and index % 4 == 0:  # the same decision again, under a new webhook id
                store_delivery(shop, "shopify", topic, f"wh-{index}-again", json.dumps(body).encode())
        if index % 50 == 25:
            api = {
                "type": "support.ticket",
                "occurred_at": "2026-10-02T10:00:00Z",
                "identifiers": {"email": f"person{index % 7}@bench-mail.net"},
                "properties": {},
            }
            store_delivery(shop, "api", "support.ticket", f"api-{index}", api)
    db.session.commit()


def snapshot(shop_id: int) -> dict:
    """Every live profile of the shop by its identifiers, with what ingest keeps on it; ids and
    clocks left out.

    Not the lifecycle stage: row by row it is refreshed after each row that changed the profile,
    a batch refreshes it once at its end, from the same or later facts (never an older stage).
    """
    idents: dict[int, list] = {}
    for kind, value, profile_id in db.session.execute(
        sa.select(Identifier.kind, Identifier.value, Identifier.profile_id).where(
            Identifier.shop_id == shop_id
        )
    ):
        idents.setdefault(profile_id, []).append((kind, value))
    key = {pid: tuple(sorted(values)) for pid, values in idents.items()}
    out: dict = {}
    for p in db.session.scalars(sa.select(Profile).where(Profile.shop_id == shop_id)):
        if p.merged_into_id is not None or p.id not in key:
            continue
        out[key[p.id]] = {
            "seen": (p.first_seen_at, p.last_seen_at, p.last_engaged_at),
            "names": (p.first_name, p.last_name, p.search_text),
            "orders": (p.order_count, str(p.lifetime_spend), p.last_order_at, p.acquisition_channel),
        }
    counters = db.session.execute(
        sa.select(EngagementCounter.profile_id, EngagementCounter.channel, EngagementCounter.metric)
        .add_columns(EngagementCounter.count, EngagementCounter.last_at)
        .where(EngagementCounter.shop_id == shop_id)
    )
    for pid, channel, metric, count, last_at in counters:
        out[key[pid]].setdefault("counters", {})[(channel, metric)] = (count, last_at)
    events = db.session.execute(
        sa.select(Event.external_id, Event.profile_id).where(SIGNALS, Event.shop_id == shop_id)
    )
    out["events"] = sorted((ext, key.get(pid)) for ext, pid in events)
    out["orders"] = sorted(
        (o.external_id, key.get(o.profile_id), str(o.total))
        for o in db.session.scalars(sa.select(Order).where(Order.shop_id == shop_id))
    )
    consents = db.session.execute(
        sa.select(ConsentRecord.profile_id, ConsentRecord.channel, ConsentRecord.status).where(
            ConsentRecord.shop_id == shop_id
        )
    )
    out["consents"] = sorted((key.get(pid), channel, status) for pid, channel, status in consents)
    states = db.session.execute(
        sa.select(
            ConsentState.profile_id, ConsentState.channel, ConsentState.status, ConsentRecord.captured_at
        )
        .join(ConsentRecord, ConsentRecord.id == ConsentState.record_id)
        .where(ConsentState.shop_id == shop_id)
    )
    out["consent_states"] = sorted((key.get(pid), channel, status, at) for pid, channel, status, at in states)
    out["unsubscribed"] = sorted(
        key[p.id]
        for p in db.session.scalars(
            sa.select(Profile).where(Profile.shop_id == shop_id, Profile.globally_unsubscribed.is_(True))
        )
        if p.id in key
    )
    return out


def row_by_row(delivery_ids: list[int]) -> None:
    """The reference: each row applied by its own handler, one after the other."""
    for delivery_id in delivery_ids:
        worker._work(lambda shops, i=delivery_id: worker._claim([i], shops), isolate=True)


def statuses() -> list[str]:
    db.session.expire_all()
    return list(db.session.scalars(sa.select(WebhookDelivery.status).order_by(WebhookDelivery.id)))


def test_a_drained_batch_ends_like_the_rows_applied_one_by_one(app, db):
    shop = make_shop("batch.myshopify.com")
    store_mix(shop_model(shop))
    ids = list(db.session.scalars(sa.select(WebhookDelivery.id).order_by(WebhookDelivery.id)))
    row_by_row(ids)
    assert set(statuses()) == {"processed"}
    expected = snapshot(shop.id)
    from tests.conftest import _truncate_all

    _truncate_all()
    shop = make_shop("batch.myshopify.com")
    store_mix(shop_model(shop))
    app.config["C360_INGEST_BATCH"] = 1000
    try:
        assert worker.drain_shop(shop.id) == len(ids)
    finally:
        app.config.pop("C360_INGEST_BATCH")
    assert set(statuses()) == {"processed"}
    assert snapshot(shop.id) == expected


def shop_model(shop):
    from app.models import Shop

    return db.session.get(Shop, shop.id)


def _page_views(n: int, broken: int | None = None):
    """A shop with ``n`` page views stored in its inbox (``broken``: that one's time is no time)."""
    shop = make_shop("batch.myshopify.com")
    events = []
    for i in range(n):
        event = fixture("pixel/page_viewed.json")
        event.update(id=f"pv-{i}", timestamp=f"2026-10-01T0{i}:00:00Z")
        events.append(event)
    if broken is not None:
        events[broken]["timestamp"] = "yesterday"  # stored as is, fails when applied
    store_deliveries(shop_model(shop), "pixel", [(e["name"], e["id"], e) for e in events])
    db.session.commit()
    return shop


def test_one_bad_row_in_a_batch_fails_alone_and_is_dead_lettered_at_once(app, db):
    shop = _page_views(6, broken=3)
    assert worker.drain_shop(shop.id) == 6
    assert statuses() == ["processed"] * 3 + ["dead"] + ["processed"] * 2
    row = db.session.scalar(sa.select(WebhookDelivery).where(WebhookDelivery.status == "dead"))
    # Not the provider's format: it would fail the same way at every retry, so none is scheduled.
    assert row.attempts == 1 and "timestamp" in row.last_error and row.next_attempt_at is None
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Event).where(SIGNALS)) == 5
    assert worker.drain_shop(shop.id) == 0


def test_a_drain_works_batch_after_batch_in_id_order(app, db):
    shop = _page_views(7)
    app.config["C360_INGEST_BATCH"] = 3
    try:
        assert worker.drain_shop(shop.id) == 7
    finally:
        app.config.pop("C360_INGEST_BATCH")
    assert statuses() == ["processed"] * 7


def rq_only(app):
    if not app.config.get("REDIS_URL"):
        pytest.skip("embedded mode runs the drain inline: nothing is queued")


def queued() -> int:
    return get_queue().queue("webhooks").count


def test_a_burst_of_requests_queues_one_drain_per_shop(app, client, ishop, drain):
    rq_only(app)
    other = make_shop("bravo.myshopify.com")
    for i in range(5):
        event = fixture("pixel/page_viewed.json")
        event["id"] = f"burst-{i}"
        assert post_pixel(client, event).status_code == 200
    assert queued() == 1
    event = fixture("pixel/page_viewed.json")
    event.update(id="other-1", shop=other.domain)
    assert post_pixel(client, event, origin=f"https://{other.domain}").status_code == 200
    assert queued() == 2
    drain()
    assert set(statuses()) == {"processed"}
    event = fixture("pixel/page_viewed.json")
    event["id"] = "after-1"
    post_pixel(client, event)
    assert queued() == 1  # the drain cleared its flag: new work queues a new drain
    drain()
    assert set(statuses()) == {"processed"}


def test_a_row_committed_while_a_drain_runs_is_never_stranded(app, client, ishop, drain, monkeypatch):
    """The drain clears its flag before it claims: a row committed after the claim queues a new drain."""
    rq_only(app)
    real_claim, posted = worker._claim_next, []

    def claim_then_accept(*args, **kwargs):
        rows = real_claim(*args, **kwargs)
        if not posted:  # another web process accepts a row right after this claim was read
            event = fixture("pixel/page_viewed.json")
            event["id"] = f"late-{uuid.uuid4().hex[:6]}"
            posted.append(
                app.test_client().post("/collect", data=json.dumps(event), content_type="text/plain")
            )
        return rows

    monkeypatch.setattr(worker, "_claim_next", claim_then_accept)
    event = fixture("pixel/page_viewed.json")
    event["id"] = "early-1"
    post_pixel(client, event)
    assert queued() == 1
    drain()  # runs the first drain, which misses the late row, then the drain the late row queued
    assert posted and posted[0].status_code == 200
    assert statuses() == ["processed", "processed"]


def test_page_views_and_email_events_cost_a_constant_number_of_statements_per_batch(app, db, monkeypatch):
    """Outside identity resolution a batch is a fixed set of bulk statements, whatever its size."""
    from app.services import resolution

    real, inside = resolution.resolve_many, [False]

    def counted(*args, **kwargs):
        inside[0] = True
        try:
            return real(*args, **kwargs)
        finally:
            inside[0] = False

    monkeypatch.setattr(resolution, "resolve_many", counted)

    def statements_for(n: int, offset: int) -> int:
        shop = shop_model(make_shop(f"s{offset}.myshopify.com"))
        for kind, body in build_events(n, seed=offset):
            if kind == "pixel":
                store_deliveries(shop, "pixel", [(body["name"], body["id"], body)])
            elif kind == "sendgrid":
                store_deliveries(shop, "sendgrid", [(body["event"], body["sg_event_id"], body)])
        db.session.commit()
        seen: list[str] = []

        def listener(conn, cursor, statement, params, context, executemany):
            if not inside[0]:
                seen.append(statement)

        sa.event.listen(db.engine, "before_cursor_execute", listener)
        try:
            with planner_stats_held():
                worker.drain_shop(shop.id)
        finally:
            sa.event.remove(db.engine, "before_cursor_execute", listener)
        assert set(statuses()) == {"processed"}
        return len(seen)

    # Claim, shop lock or BEGIN, message lookup, search texts, events, counters, one UPDATE per
    # set of changed profile columns, lifecycle changes, rows marked processed.
    small, large = statements_for(40, 1), statements_for(160, 2)
    assert large <= small + 2 and large <= 16, (small, large)


def test_a_long_drain_hands_over_to_a_fresh_job(app, client, ishop, drain):
    """A drain stops after its time budget and queues its continuation: nothing is left behind."""
    rq_only(app)
    events = []
    for i in range(7):
        event = fixture("pixel/page_viewed.json")
        event.update(id=f"pv-{i}", timestamp=f"2026-10-01T0{i}:00:00Z")
        events.append(event)
    app.config.update(C360_INGEST_BATCH=2, C360_INGEST_DRAIN_SECONDS=0)
    try:
        post_pixel(client, events)
        assert queued() == 1
        drain()
    finally:
        app.config.pop("C360_INGEST_BATCH")
        app.config.pop("C360_INGEST_DRAIN_SECONDS")
    assert statuses() == ["processed"] * 7


def test_a_stuck_backlog_is_swept_into_one_drain_not_read_row_by_row(app, db, drain):
    rq_only(app)
    shop = make_shop("batch.myshopify.com")
    events = []
    for i in range(7):
        event = fixture("pixel/page_viewed.json")
        event.update(id=f"stuck-{i}")
        events.append(event)
    store_deliveries(shop_model(shop), "pixel", [(e["name"], e["id"], e) for e in events])
    db.session.commit()  # committed, never enqueued: the process died here
    assert worker.sweep_deliveries() == 0  # too fresh: its drain may still be on the way
    assert worker.sweep_deliveries(stale_after_seconds=0) == 7
    assert worker.sweep_deliveries(stale_after_seconds=0) == 7  # found again, but not queued twice
    assert queued() == 1
    drain()
    assert statuses() == ["processed"] * 7


def test_storing_a_request_keeps_each_id_once_within_it_and_across_requests(app, db):
    shop = shop_model(make_shop("store.myshopify.com"))
    first = store_deliveries(shop, "pixel", [("page_viewed", "e1", {"n": 1})])
    again = store_deliveries(
        shop,
        "pixel",
        [("page_viewed", "e2", {"n": 2}), ("page_viewed", "e1", {"n": 1}), ("page_viewed", "e2", {"n": 3})],
    )
    db.session.commit()
    assert first[0].created and [s.created for s in again] == [True, False, False]
    stored = db.session.execute(
        sa.select(WebhookDelivery.id, WebhookDelivery.external_id, WebhookDelivery.body)
        .where(WebhookDelivery.shop_id == shop.id)
        .order_by(WebhookDelivery.id)
    ).all()
    assert [(i, e) for i, e, _ in stored] == [(first[0].delivery_id, "e1"), (again[0].delivery_id, "e2")]
    assert json.loads(stored[1].body) == {"n": 2}


def test_a_batch_writes_its_customers_order_counters_together_whatever_their_number(app, db):
    """A batch's orders change many customers' counters; a consent in the same batch locks its
    profile, and that lock's autoflush used to write the counters one UPDATE per customer."""
    from bench.ingest import order_body

    def profile_updates(customers: int, offset: int) -> int:
        shop = shop_model(make_shop(f"counters{offset}.myshopify.com"))
        emails = [f"c{offset}-{p}@mail.uk" for p in range(customers)]

        def orders(first: int) -> None:
            for p, email in enumerate(emails):
                body = order_body(first + p, p, email, f"2026-10-0{1 + first // 100}T10:00:00Z")
                store_delivery(shop, "shopify", "orders/create", f"o{first + p}", json.dumps(body).encode())

        orders(0)
        db.session.commit()
        worker.drain_shop(shop.id)
        orders(100)
        consent = {
            "customer_id": 900000,
            "email_address": emails[0],
            "email_marketing_consent": {"state": "subscribed", "consent_updated_at": "2026-10-02T11:00:00Z"},
        }
        topic = "customers/email_marketing_consent_update"
        store_delivery(shop, "shopify", topic, "consent-1", json.dumps(consent).encode())
        db.session.commit()
        with statements() as seen:
            worker.drain_shop(shop.id)
        assert set(statuses()) == {"processed"}
        counts = db.session.scalars(sa.select(Profile.order_count).where(Profile.shop_id == shop.id))
        assert sorted(counts) == [2] * customers
        return sum(1 for s in seen if s.startswith("UPDATE profiles"))

    few, many = profile_updates(2, 1), profile_updates(12, 2)
    assert many == few, (few, many)


def test_a_batch_of_orders_looks_through_its_session_a_fixed_number_of_times(app, db, monkeypatch):
    """Which profiles a batch changed is noted at each flush, not by scanning every pending row
    (hundreds of orders with their lines) after every row: that grew with the square of the batch."""
    import sqlalchemy.orm as so

    from bench.ingest import order_body

    looks = [0]
    real = so.Session.new

    def counted(session):
        looks[0] += 1
        return real.fget(session)

    monkeypatch.setattr(so.Session, "new", property(counted))

    def looks_for(orders: int, offset: int) -> int:
        shop = shop_model(make_shop(f"looks{offset}.myshopify.com"))
        for p in range(orders):
            body = order_body(p, p, f"l{offset}-{p}@mail.uk", "2026-10-01T10:00:00Z")
            store_delivery(shop, "shopify", "orders/create", f"o{p}", json.dumps(body).encode())
        db.session.commit()
        looks[0] = 0
        worker.drain_shop(shop.id)
        assert set(statuses()) == {"processed"}
        assert db.session.scalar(sa.select(sa.func.count()).where(Order.shop_id == shop.id)) == orders
        return looks[0]

    few, many = looks_for(2, 1), looks_for(30, 2)
    assert many == few, (few, many)


def test_a_value_the_database_refuses_is_dead_lettered_at_once_and_not_retried(app, db, monkeypatch):
    from sqlalchemy.exc import DataError

    from app.services.ingest import pixel

    shop = _page_views(3)
    plan = pixel.plan_pixel_event

    def refused(shop, event, delivery):
        if event["id"] == "pv-1":  # what PostgreSQL answers for a value past its column
            raise DataError("INSERT …", {}, Exception("value too long for type character varying(64)"))
        return plan(shop, event, delivery)

    monkeypatch.setattr(pixel, "plan_pixel_event", refused)
    assert worker.drain_shop(shop.id) == 3
    assert statuses() == ["processed", "dead", "processed"]
    row = db.session.scalar(sa.select(WebhookDelivery).where(WebhookDelivery.status == "dead"))
    assert row.attempts == 1 and row.next_attempt_at is None
    assert row.last_error == "DataError (Exception): value too long for type character varying(64)"
