"""``POST /api/v1/events``, ``GET /api/v1/ingest/status`` and ``c360 backfill``."""

from __future__ import annotations

import json

import sqlalchemy as sa

from app.extensions import db
from app.models import Event, Order, WebhookDelivery
from tests.helpers import make_shop
from tests.ingest_support import SIGNALS, doc_of, fixture, ishop_fixture, post_pixel, post_shopify

ishop = ishop_fixture


def event(**over):
    body = {
        "type": "support.contacted",
        "occurred_at": "2026-10-05T10:00:00+01:00",
        "identifiers": {"email": " Sarah.J.Home@Gmail.com "},
        "channel": "support",
        "properties": {"ticket": "T-1"},
    }
    body.update(over)
    return body


def test_generic_event_is_accepted_with_202_and_lands_on_the_profile(client, ishop, drain):
    response = client.post("/api/v1/events", json=event(), headers=ishop.auth)
    drain()
    assert response.status_code == 202
    event_id = response.get_json()["event_id"]
    row = db.session.scalar(sa.select(Event).where(Event.external_id == event_id))
    assert (row.type, row.channel, row.source, row.properties) == (
        "support.contacted",
        "support",
        "api",
        {"ticket": "T-1"},
    )
    assert doc_of(ishop, "email", "sarah.j.home@gmail.com")["id"] == row.profile_id


def test_client_supplied_id_makes_a_resend_a_no_op(client, ishop, drain):
    for _ in range(3):
        response = client.post("/api/v1/events", json=event(id="evt-42"), headers=ishop.auth)
        assert response.status_code == 202 and response.get_json()["event_id"] == "evt-42"
    drain()
    signals = sa.select(sa.func.count()).select_from(Event).where(SIGNALS)
    assert db.session.scalar(signals) == 1


def test_push_open_and_dismissal_count_as_push_engagement(client, ishop, drain):
    for etype in ("push.opened", "push.dismissed"):
        client.post("/api/v1/events", json=event(type=etype, channel="push"), headers=ishop.auth)
    drain()
    push = doc_of(ishop, "email", "sarah.j.home@gmail.com")["engagement"]["by_channel"]["push"]
    assert (push["opened"], push["dismissed"]) == (1, 1)


def test_marketplace_order_counts_in_marketplace_spend(client, ishop, drain):
    body = event(
        type="order.placed",
        channel="marketplace",
        identifiers={"amazon_buyer_id": "AMZ-1", "email": "sarah.j.home@gmail.com"},
        properties={
            "order_id": "111-222",
            "total": "30.50",
            "currency": "GBP",
            "marketplace": "amazon",
            "line_items": [{"sku": "LS-M", "quantity": 1, "price": "30.50"}],
        },
    )
    for _ in range(2):
        assert client.post("/api/v1/events", json=body, headers=ishop.auth).status_code == 202
    drain()
    orders = doc_of(ishop, "amazon_buyer", "AMZ-1")["orders"]
    assert orders["marketplace"] == {"count": 1, "spend": 30.5}
    assert db.session.scalar(sa.select(Order.source)) == "amazon"


def test_a_pos_visit_from_another_system_is_the_profiles_last_store_visit_through_later_orders(
    client, ishop, drain
):
    """A footfall or booking system reports a visit to the shop without a purchase: it is their
    last store visit, and an older online order recounted later does not take it away."""
    visit = event(type="pos.visited", channel="pos", occurred_at="2026-10-20T15:00:00+00:00")
    visit["properties"] = {"location_id": "3001"}
    assert client.post("/api/v1/events", json=visit, headers=ishop.auth).status_code == 202
    drain()
    doc = doc_of(ishop, "email", "sarah.j.home@gmail.com")
    assert doc["orders"]["pos"]["last_visit_at"].startswith("2026-10-20T15:00:00")
    order = fixture("shopify/orders_create_web.json")  # online, October 3rd, the same person
    order["customer"]["email"] = order["email"] = "sarah.j.home@gmail.com"
    assert post_shopify(client, ishop, "orders/create", order, "wh-after-visit").status_code == 200
    drain()
    orders = doc_of(ishop, "email", "sarah.j.home@gmail.com")["orders"]
    assert orders["count"] == 1 and orders["pos"]["last_visit_at"].startswith("2026-10-20T15:00:00")


def _amazon_order(**props) -> dict:
    return event(
        type="order.placed",
        channel="marketplace",
        identifiers={"amazon_buyer_id": "AMZ-1"},
        properties={"order_id": "111-333", "total": "100.00", "marketplace": "amazon", **props},
    )


def test_a_marketplace_order_in_another_currency_counts_its_total_in_shop_money(client, ishop, drain):
    refused = client.post("/api/v1/events", json=_amazon_order(currency="USD"), headers=ishop.auth)
    assert refused.status_code == 400
    assert "needs properties.shop_total" in refused.get_json()["error"]["message"]
    body = _amazon_order(currency="usd", shop_total="78.90")
    assert client.post("/api/v1/events", json=body, headers=ishop.auth).status_code == 202
    drain()
    assert doc_of(ishop, "amazon_buyer", "AMZ-1")["orders"]["marketplace"] == {"count": 1, "spend": 78.9}
    row = db.session.scalar(sa.select(Order))
    assert (str(row.total), row.currency, row.presentment_currency) == ("78.90", ishop.model.currency, "USD")


def test_the_same_marketplace_order_named_in_another_case_counts_once(client, ishop, drain):
    for name, event_id in (("amazon", "e1"), ("Amazon ", "e2")):
        body = {**_amazon_order(marketplace=name), "id": event_id}
        assert client.post("/api/v1/events", json=body, headers=ishop.auth).status_code == 202
    drain()
    assert doc_of(ishop, "amazon_buyer", "AMZ-1")["orders"]["marketplace"] == {"count": 1, "spend": 100.0}


def _amazon_refund(amount: str, event_id: str, **props) -> dict:
    return {
        **event(
            type="order.refunded",
            channel="marketplace",
            identifiers={"amazon_buyer_id": "AMZ-1"},
            properties={"order_id": "111-333", "amount": amount, "marketplace": "amazon", **props},
        ),
        "id": event_id,
    }


def test_a_marketplace_refund_lowers_the_orders_spend_once_and_never_below_nothing(client, ishop, drain):
    assert client.post("/api/v1/events", json=_amazon_order(), headers=ishop.auth).status_code == 202
    for _ in range(2):  # a resend of one refund
        sent = client.post("/api/v1/events", json=_amazon_refund("30.00", "r1"), headers=ishop.auth)
        assert sent.status_code == 202
    drain()
    assert doc_of(ishop, "amazon_buyer", "AMZ-1")["orders"]["lifetime_spend"] == 70.0
    client.post("/api/v1/events", json=_amazon_refund("90.00", "r2"), headers=ishop.auth)
    drain()
    orders = doc_of(ishop, "amazon_buyer", "AMZ-1")["orders"]
    assert (orders["lifetime_spend"], orders["count"]) == (0.0, 0)  # refunded in full: no purchase
    refused = client.post("/api/v1/events", json=_amazon_refund("-5", "r3"), headers=ishop.auth)
    assert refused.status_code == 400 and "properties.amount" in refused.get_json()["error"]["message"]


def test_a_refund_of_an_order_not_received_yet_waits_for_it_and_is_not_dropped(client, ishop, drain):
    assert (
        client.post("/api/v1/events", json=_amazon_refund("30.00", "early"), headers=ishop.auth).status_code
        == 202
    )
    drain()
    row = db.session.scalar(sa.select(WebhookDelivery).where(WebhookDelivery.external_id == "early"))
    assert row.status == "failed" and "not known yet" in row.last_error  # retried with backoff


def test_bad_events_are_400_with_the_reason(client, ishop):
    cases = [
        (event(type="Not A Type"), "type is required"),
        (event(occurred_at="soon"), "occurred_at"),
        (event(identifiers={}), "identifiers"),
        (event(identifiers={"passport": "X"}), "unknown identifier kinds"),
        # Answered 202, it landed on nobody: no identifier that is one names anyone.
        (event(identifiers={"email": "not-an-email", "phone": "abc"}), "no usable identifier"),
        (event(channel="pigeon"), "channel must be one of"),
        (event(properties=[1]), "properties must be an object"),
        # Cut to 255 characters, two long ids sharing their start were one, and the second dropped.
        (event(id="x" * 256), "id is longer than 255 characters"),
        (event(id={"a": 1}), "id must be"),
        (_amazon_order(order_id="AMZ-" + "0" * 70), "longer than 64 characters"),
        (event(type="order.placed", channel="marketplace", properties={}), "order_id"),
        (
            event(type="order.placed", channel="marketplace", properties={"order_id": {"a": 1}, "total": 1}),
            "order_id",
        ),
        (
            event(type="order.placed", channel="marketplace", properties={"order_id": "A-1"}),
            "properties.total",
        ),
        (
            event(type="order.placed", channel="marketplace", properties={"order_id": "A-1", "total": -500}),
            "cannot be negative",
        ),
    ]
    for body, reason in cases:
        response = client.post("/api/v1/events", json=body, headers=ishop.auth)
        assert response.status_code == 400, body
        assert reason in response.get_json()["error"]["message"]
    assert client.post("/api/v1/events", data="nope", headers=ishop.auth).status_code == 400
    assert client.post("/api/v1/events", json=event()).status_code == 401


def test_an_event_time_without_its_offset_or_a_misspelt_field_is_refused_and_stores_nothing(client, ishop):
    """The contract writes times as ISO 8601 with their offset: an epoch 0 dated a support touch 1970,
    and a till's local time read as UTC moved it by hours. A misspelt field lost what it held."""
    cases = [
        (event(occurred_at=0), "occurred_at is required"),
        (event(occurred_at=1700000000), "occurred_at is required"),
        (event(occurred_at="1700000000"), "not an ISO 8601 time"),
        (event(occurred_at="2026-11-01T10:00:00"), "must carry its UTC offset"),
        (event(occurred_at="2026-11-01"), "must carry its UTC offset"),
        ({**event(), "propertes": {"ticket": "T-2"}}, "unknown fields: propertes"),
    ]
    for body, reason in cases:
        response = client.post("/api/v1/events", json=body, headers=ishop.auth)
        assert response.status_code == 400, body
        assert reason in response.get_json()["error"]["message"], body
    assert db.session.scalar(sa.select(sa.func.count()).select_from(WebhookDelivery)) == 0
    for written in ("2026-11-01T10:00:00Z", "2026-11-01T10:00:00-05:00"):
        assert (
            client.post("/api/v1/events", json=event(occurred_at=written), headers=ishop.auth).status_code
            == 202
        )


def test_an_event_accepted_before_the_stricter_rules_is_still_processed_not_dead_lettered(ishop):
    """The door's rules (offset, no unknown field) are not asked again of what it accepted before."""
    from app.services.ingest.inbox import store_delivery

    for n, occurred_at in enumerate((1790000000, "2026-10-05T10:00:00")):
        body = {**event(occurred_at=occurred_at), "id": f"old-{n}", "extra": "kept as it was"}
        store_delivery(ishop.model, "api", body["type"], body["id"], body)
    db.session.commit()
    from workers.ingest import drain_shop

    drain_shop(ishop.id)
    assert set(db.session.scalars(sa.select(WebhookDelivery.status))) == {"processed"}


def test_ingest_status_counts_this_shops_deliveries_only(client, ishop, drain):
    other = make_shop("bravo.myshopify.com")
    post_pixel(client, fixture("pixel/batch.json"))
    post_shopify(client, ishop, "shop/redact", fixture("shopify/shop_redact.json"), "wh-redact")
    client.post("/api/v1/events", json=event(), headers=other.auth)
    drain()
    status = client.get("/api/v1/ingest/status", headers=ishop.auth).get_json()
    assert status == {
        "received": 3,
        "pending": 0,
        "processed": 2,
        "dead_letter": 0,
        "waiting": 1,
        "events": 2,
    }
    assert client.get("/api/v1/ingest/status", headers=other.auth).get_json()["processed"] == 1


def test_backfill_imports_order_history_with_progress_and_is_rerunnable(runner, ishop, tmp_path):
    lines = [
        json.dumps(fixture(f"shopify/{name}.json"))
        for name in ("orders_create_web", "orders_create_pos", "orders_cancelled")
    ]
    path = tmp_path / "orders.jsonl"
    path.write_text("\n".join([*lines, "{not json", json.dumps({"id": 9})]) + "\n")
    for _ in range(2):
        result = runner.invoke(args=["backfill", "--shop", ishop.domain, "--orders", str(path)])
        assert result.exit_code == 1
        assert "Resolving the buyers of 5 lines" in result.output  # before the bar, which waits for it
        assert "3 orders imported, 2 lines skipped" in result.output
        assert "line 4" in result.output and "line 5" in result.output
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Order)) == 3
    orders = doc_of(ishop, "shopify_customer", "7001")["orders"]
    assert (orders["count"], orders["lifetime_spend"], orders["pos"]["count"]) == (2, 126.0, 1)
    missing = runner.invoke(args=["backfill", "--shop", "nobody.myshopify.com", "--orders", str(path)])
    assert missing.exit_code != 0


def test_an_order_in_money_other_than_the_shops_waits_with_the_fix_and_counts_once_the_shop_is_set_right(
    client, runner, drain, db, tmp_path
):
    """A shop created with the default USD for a store in GBP counted £84 as $84, without a word."""
    from app.models import Shop
    from tests.ingest_support import make_ingest_shop

    shop = make_ingest_shop(currency="USD")
    body = fixture("shopify/orders_create_web.json")  # shop money in GBP
    assert post_shopify(client, shop, "orders/create", body, "wh-usd").status_code == 200
    drain()
    row = db.session.scalar(sa.select(WebhookDelivery))
    assert row.status == "dead" and "shop money is in GBP but this shop is set up in USD" in row.last_error
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Order)) == 0
    path = tmp_path / "orders.jsonl"
    path.write_text(json.dumps(fixture("shopify/orders_create_pos.json")) + "\n")
    skipped = runner.invoke(args=["backfill", "--shop", shop.domain, "--orders", str(path)])
    assert "1 line skipped" in skipped.output and "--currency GBP" in skipped.output
    assert runner.invoke(args=["shop", "update", "--domain", shop.domain, "--currency", "GBP"]).exit_code == 0
    assert runner.invoke(args=["dlq", "retry", "--all"]).exit_code == 0
    drain()
    db.session.expire_all()
    assert db.session.get(Shop, shop.id).currency == "GBP"
    orders = doc_of(shop, "shopify_customer", "7001")["orders"]
    assert (orders["count"], orders["lifetime_spend"], orders["currency"]) == (1, 84.0, "GBP")


def test_an_event_whose_id_is_zero_is_deduplicated_like_any_other(client, ishop, drain):
    """``"id": 0`` was taken for no id: each resend got a random one and was counted again."""
    event = {
        "id": 0,
        "type": "support.contacted",
        "occurred_at": "2026-11-20T10:00:00Z",
        "channel": "support",
        "identifiers": {"email": "zero@mail.uk"},
    }
    answers = [client.post("/api/v1/events", json=event, headers=ishop.auth).get_json() for _ in range(2)]
    assert [a["duplicate"] for a in answers] == [False, True]
    assert answers[0]["event_id"] == answers[1]["event_id"] == "0"


def test_a_marketplace_order_resent_under_another_event_id_is_on_the_timeline_once(client, ishop, drain):
    """Its counters counted one order, but the timeline showed the purchase twice."""
    order = {
        "type": "order.placed",
        "occurred_at": "2026-11-20T10:00:00Z",
        "channel": "marketplace",
        "identifiers": {"email": "buyer@mail.uk"},
        "properties": {"marketplace": "amazon", "order_id": "111-222", "total": 25, "currency": "GBP"},
    }
    for event_id in ("o1", "o3"):
        assert (
            client.post("/api/v1/events", json={**order, "id": event_id}, headers=ishop.auth).status_code
            == 202
        )
    drain()
    placed = sa.select(sa.func.count()).select_from(Event).where(Event.type == "order.placed")
    assert db.session.scalar(placed) == 1
    assert doc_of(ishop, "email", "buyer@mail.uk")["orders"]["marketplace"]["count"] == 1


def test_a_marketplace_order_with_an_object_for_a_title_or_number_is_refused_and_stores_nothing(
    client, ishop, drain
):
    """A title or order number that is an object or a list would be kept as its Python spelling
    ("{'en': 'Linen shirt'}") on the orders page: refused with the field named, like a bad total."""
    bad_bodies = {
        "properties.number": _amazon_order(number={"display": "A-1"}),
        "properties.line_items[0].title": _amazon_order(line_items=[{"title": {"en": "Linen shirt"}}]),
        "properties.line_items[1].sku": _amazon_order(line_items=[{"sku": "LS-M"}, {"sku": ["LS", "M"]}]),
        "properties.line_items[0].product_id": _amazon_order(line_items=[{"product_id": True}]),
    }
    for field, body in bad_bodies.items():
        refused = client.post("/api/v1/events", json=body, headers=ishop.auth)
        assert refused.status_code == 400, field
        assert field in refused.get_json()["error"]["message"]
    good = _amazon_order(number=1001, line_items=[{"title": "Linen shirt", "sku": "LS-M", "product_id": 42}])
    assert client.post("/api/v1/events", json=good, headers=ishop.auth).status_code == 202
    drain()
    order = db.session.scalar(sa.select(Order))
    assert (order.number, [(i.title, i.sku, i.product_id) for i in order.lines]) == (
        "1001",
        [("Linen shirt", "LS-M", "42")],
    )
