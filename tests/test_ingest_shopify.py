"""Every Shopify topic from realistic payloads lands on the right profile, once, in any order."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from app.extensions import db
from app.models import ConsentRecord, Event, Order, Shop, WebhookDelivery
from app.services.consent import channel_states
from app.services.counters import recompute_order_counters
from app.services.identifiers import normalise
from tests.ingest_support import SIGNALS, doc_of, fixture, ishop_fixture, post_shopify, profile_of

# Derived events (lifecycle changes, stamped with processing time) are not signals.

ishop = ishop_fixture


def send(client, drain, shop, topic, name_or_body, webhook_id, **kw):
    body = fixture(f"shopify/{name_or_body}.json") if isinstance(name_or_body, str) else name_or_body
    response = post_shopify(client, shop, topic, body, webhook_id, **kw)
    assert response.status_code == 200, response.get_data(as_text=True)
    drain()
    return response


def order(shop, external_id: str) -> Order:
    db.session.expire_all()
    return db.session.scalar(
        sa.select(Order).where(Order.shop_id == shop.id, Order.external_id == external_id)
    )


def test_web_order_builds_order_lines_and_the_buyers_profile(client, ishop, drain):
    send(client, drain, ishop, "orders/create", "orders_create_web", "wh-1")
    row = order(ishop, "5001")
    assert (row.channel, row.number, row.total, row.currency) == ("online", "#1001", 84, "GBP")
    assert row.utm_source == "instagram" and row.referring_site == "https://l.instagram.com/"
    assert (row.billing_country, row.shipping_country) == ("GB", "GB")
    assert [(ln.sku, ln.quantity, ln.price, ln.product_id) for ln in row.lines] == [("LS-M", 1, 84, "4")]
    doc = doc_of(ishop, "shopify_customer", "7001")
    assert doc["name"] == "Sarah Jones" and doc["country"] == "GB"
    assert doc["emails"] == ["sarah.j.home@gmail.com"]
    # The fixture uses a drama-range number; it links only if the identifiers service calls it a phone.
    phone = normalise("phone", "+447700900123", "GB")
    assert doc["phones"] == ([phone.value] if phone.kind == "phone" else [])
    assert doc["orders"]["count"] == 1 and doc["orders"]["lifetime_spend"] == 84.0
    assert "instagram" in doc["orders"]["acquisition_channel"]
    profile = profile_of(ishop, "email", "sarah.j.home@gmail.com")
    assert profile.search_text.startswith("sarah jones sarah.j.home@gmail.com")
    assert row.profile_id == profile.id


def test_pos_order_counts_as_pos_with_its_location(client, ishop, drain):
    send(client, drain, ishop, "orders/create", "orders_create_pos", "wh-pos")
    assert order(ishop, "5002").location_id == "3001"
    pos = doc_of(ishop, "shopify_customer", "7001")["orders"]["pos"]
    assert (pos["count"], pos["spend"], pos["preferred_location"]) == (1, 42.0, 3001)
    assert pos["last_visit_at"].startswith("2026-10-28T12:10")


def test_guest_checkout_links_by_email_and_phone_without_a_customer_id(client, ishop, drain):
    guest = fixture("shopify/orders_create_guest.json")
    guest.update(email="pat.guest@gmail.com", phone="07911 123456")  # fixture values are on blocklists
    send(client, drain, ishop, "orders/create", guest, "wh-guest")
    assert profile_of(ishop, "email", "pat.guest@gmail.com") is not None
    doc = doc_of(ishop, "phone", "+447911123456")
    assert doc["orders"]["count"] == 1 and doc["orders"]["lifetime_spend"] == 19.99
    assert not [i for i in doc["identifiers"] if i["kind"] == "shopify_customer"]
    assert doc["name"] == "Pat Guest"


def test_multicurrency_order_is_counted_in_shop_money(client, ishop, drain):
    send(client, drain, ishop, "orders/create", "orders_create_multicurrency", "wh-mc")
    row = order(ishop, "5004")
    assert (row.total, row.currency, row.presentment_currency) == (120, "GBP", "USD")
    assert doc_of(ishop, "email", "dave@example.net")["orders"]["lifetime_spend"] == 120.0


def test_an_order_whose_landing_page_cannot_be_read_is_counted_without_its_utm_source(client, ishop, drain):
    body = fixture("shopify/orders_create_web.json")
    body["landing_site"] = "http://[shop/?utm_source=ig"  # the shopper's address bar, not a URL
    send(client, drain, ishop, "orders/create", body, "wh-odd-landing")
    row = order(ishop, "5001")
    assert (row.total, row.utm_source, row.landing_site) == (84, None, "http://[shop/?utm_source=ig")
    assert doc_of(ishop, "shopify_customer", "7001")["orders"]["count"] == 1


def test_cancelled_order_is_kept_but_not_counted(client, ishop, drain):
    send(client, drain, ishop, "orders/create", "orders_create_web", "wh-1")
    send(client, drain, ishop, "orders/cancelled", "orders_cancelled", "wh-c")
    assert order(ishop, "5005").cancelled_at is not None
    doc = doc_of(ishop, "shopify_customer", "7001")
    assert doc["orders"]["count"] == 1 and doc["orders"]["lifetime_spend"] == 84.0
    types = set(db.session.scalars(sa.select(Event.type).where(SIGNALS)))
    assert {"order.placed", "order.cancelled"} <= types


def test_partial_refund_lowers_net_spend(client, ishop, drain):
    send(client, drain, ishop, "orders/create", "orders_create_web", "wh-1")
    send(client, drain, ishop, "refunds/create", "refunds_create", "wh-r")
    assert order(ishop, "5001").refunded == 20
    assert doc_of(ishop, "shopify_customer", "7001")["orders"]["lifetime_spend"] == 64.0


def test_an_order_refunded_in_full_is_no_purchase(client, ishop, drain):
    """They sent back all they bought: no order, no spend, not a buyer in the shop's totals."""
    send(client, drain, ishop, "orders/create", "orders_create_web", "wh-1")
    refund = fixture("shopify/refunds_create.json")
    refund["transactions"][0]["amount"] = "84.00"
    send(client, drain, ishop, "refunds/create", refund, "wh-r-all")
    orders = doc_of(ishop, "shopify_customer", "7001")["orders"]
    assert (orders["count"], orders["lifetime_spend"], orders["last_order_at"]) == (0, 0.0, None)
    stats = client.get("/api/v1/stats", headers=ishop.auth).get_json()
    assert (stats["buyers"], stats["orders"], stats["revenue"]) == (0, 0, 0.0)


def test_a_test_order_is_kept_and_linked_but_is_no_purchase(client, auth, ishop, drain):
    """The merchant trying the checkout with the Bogus Gateway: the order is there, marked, and its
    buyer neither spent nor converted; the shop's revenue is untouched."""
    body = fixture("shopify/orders_create_web.json")
    body["test"], body["landing_site"], body["referring_site"] = True, "/?utm_source=tiktok", None
    body["created_at"] = body["processed_at"] = "2026-09-01T10:00:00+01:00"  # before the real one
    send(client, drain, ishop, "orders/create", body, "wh-test")
    assert order(ishop, "5001").test is True
    doc = doc_of(ishop, "shopify_customer", "7001")
    assert doc["emails"] == ["sarah.j.home@gmail.com"]
    assert (doc["orders"]["count"], doc["orders"]["lifetime_spend"]) == (0, 0.0)
    assert doc["lifecycle_stage"] != "converted"
    stats = client.get("/api/v1/stats", headers=ishop.auth).get_json()
    assert (stats["buyers"], stats["orders"], stats["revenue"]) == (0, 0, 0.0)
    placed = db.session.scalar(sa.select(Event).where(SIGNALS, Event.type == "order.placed"))
    assert placed.properties["test"] is True
    auth.login_as(ishop)
    page = client.get(f"/customers/{placed.profile_id}/orders").get_data(as_text=True)
    assert "test order, not counted" in page
    real = fixture("shopify/orders_create_web.json")
    real["id"], real["name"] = 5002, "#1002"
    send(client, drain, ishop, "orders/create", real, "wh-real")
    doc = doc_of(ishop, "shopify_customer", "7001")
    assert (doc["orders"]["count"], doc["orders"]["lifetime_spend"]) == (1, 84.0)
    assert "instagram" in doc["orders"]["acquisition_channel"]  # the first real order's, not the test's


def _multicurrency_refund(**transaction) -> dict:
    """A full refund of the multi-currency order (shop GBP 120.00, customer USD 140.40), paid back in USD."""
    refund = fixture("shopify/refunds_create.json")
    refund.update(id=88004, order_id=5004)
    refund["refund_line_items"] = [
        {
            "id": 77004,
            "line_item_id": 90004,
            "quantity": 1,
            "subtotal_set": {
                "shop_money": {"amount": "120.00", "currency_code": "GBP"},
                "presentment_money": {"amount": "140.40", "currency_code": "USD"},
            },
        }
    ]
    tx = {"id": 66004, "kind": "refund", "status": "success", "amount": "140.40", "currency": "USD"}
    refund["transactions"] = [{**tx, **transaction}]
    return refund


def test_a_refund_in_the_customers_currency_lowers_spend_in_shop_money(client, ishop, drain):
    send(client, drain, ishop, "orders/create", "orders_create_multicurrency", "wh-mc")
    send(client, drain, ishop, "refunds/create", _multicurrency_refund(), "wh-mc-r")
    assert order(ishop, "5004").refunded == 120
    assert doc_of(ishop, "email", "dave@example.net")["orders"]["lifetime_spend"] == 0.0


def test_a_refund_alone_in_the_customers_currency_without_money_sets_converts_at_the_orders_rate(
    client, ishop, drain
):
    """refunds/create paying back 70.20 USD of the 140.40 USD (120.00 GBP) order, no money sets:
    60.00 GBP off; booked as 70.20 GBP, two full refunds made the buyer's spend negative."""
    send(client, drain, ishop, "orders/create", "orders_create_multicurrency", "wh-mc")
    refund = _multicurrency_refund(amount="70.20")
    refund["refund_line_items"] = []
    send(client, drain, ishop, "refunds/create", refund, "wh-mc-half")
    assert order(ishop, "5004").refunded == 60
    again = _multicurrency_refund(amount="140.40")
    again.update(id=88005, refund_line_items=[])
    send(client, drain, ishop, "refunds/create", again, "wh-mc-more")
    assert order(ishop, "5004").refunded == 120  # never more than was paid
    assert doc_of(ishop, "email", "dave@example.net")["orders"]["lifetime_spend"] == 0.0


def test_a_refund_in_the_customers_currency_that_arrives_before_its_order_is_converted_when_it_comes(
    client, ishop, drain
):
    """Delivered first, the refund had no rate to convert 70.20 USD by and was booked as 70.20 GBP
    for good: the order's arrival (and a later version restating the refund) never corrected it."""
    refund = _multicurrency_refund(amount="70.20")
    refund["refund_line_items"] = []
    send(client, drain, ishop, "refunds/create", refund, "wh-mc-early")
    send(client, drain, ishop, "orders/create", "orders_create_multicurrency", "wh-mc")
    assert order(ishop, "5004").refunded == 60
    assert doc_of(ishop, "email", "dave@example.net")["orders"]["lifetime_spend"] == 60.0
    updated = fixture("shopify/orders_create_multicurrency.json")
    updated.update(updated_at="2026-10-08T09:00:00-07:00", refunds=[refund])
    send(client, drain, ishop, "orders/updated", updated, "wh-mc-upd")
    assert order(ishop, "5004").refunded == 60


def test_a_refund_in_the_customers_currency_delivered_just_before_its_order_is_converted_in_one_batch(
    client, ishop, drain
):
    refund = _multicurrency_refund(amount="70.20")
    refund["refund_line_items"] = []
    assert post_shopify(client, ishop, "refunds/create", refund, "wh-mc-early").status_code == 200
    order_body = fixture("shopify/orders_create_multicurrency.json")
    assert post_shopify(client, ishop, "orders/create", order_body, "wh-mc").status_code == 200
    drain()
    assert order(ishop, "5004").refunded == 60
    assert doc_of(ishop, "email", "dave@example.net")["orders"]["lifetime_spend"] == 60.0


def test_an_order_imported_from_another_platform_is_dated_when_it_was_processed(client, ishop, drain):
    imported = fixture("shopify/orders_create_web.json")
    imported.update(id=5099, name="#1099", processed_at="2024-05-01T10:00:00+00:00")
    send(client, drain, ishop, "orders/create", imported, "wh-imported")
    assert order(ishop, "5099").placed_at.isoformat().startswith("2024-05-01T10:00:00")


def test_an_inline_refund_in_the_customers_currency_converts_at_the_orders_rate(client, ishop, drain):
    updated = fixture("shopify/orders_create_multicurrency.json")
    refund = _multicurrency_refund(amount="70.20")  # half, and no money sets of its own
    refund["refund_line_items"] = []
    updated.update(updated_at="2026-10-08T09:00:00-07:00", refunds=[refund])
    send(client, drain, ishop, "orders/updated", updated, "wh-mc-u")
    assert order(ishop, "5004").refunded == 60


def test_a_refund_first_seen_pending_counts_once_a_newer_version_shows_it_succeeded(client, ishop, drain):
    send(client, drain, ishop, "orders/create", "orders_create_web", "wh-1")
    pending = fixture("shopify/refunds_create.json")
    pending["transactions"][0]["status"] = "pending"
    send(client, drain, ishop, "refunds/create", pending, "wh-r-pending")
    assert order(ishop, "5001").refunded == 0
    settled = fixture("shopify/orders_create_web.json")
    settled.update(updated_at="2026-10-13T10:00:00+01:00", refunds=[fixture("shopify/refunds_create.json")])
    send(client, drain, ishop, "orders/updated", settled, "wh-u-settled")
    assert order(ishop, "5001").refunded == 20
    assert doc_of(ishop, "shopify_customer", "7001")["orders"]["lifetime_spend"] == 64.0
    stale = fixture("shopify/orders_create_web.json")  # an older version listing it pending changes nothing
    stale.update(updated_at="2026-10-12T10:01:00+01:00", refunds=[pending])
    send(client, drain, ishop, "orders/updated", stale, "wh-u-stale")
    assert order(ishop, "5001").refunded == 20


def test_refund_before_its_order_is_counted_when_the_order_arrives(client, ishop, drain):
    send(client, drain, ishop, "refunds/create", "refunds_create", "wh-r")
    send(client, drain, ishop, "orders/create", "orders_create_web", "wh-1")
    assert doc_of(ishop, "shopify_customer", "7001")["orders"]["lifetime_spend"] == 64.0


def test_inline_refund_and_refund_topic_count_once(client, ishop, drain):
    refund = fixture("shopify/refunds_create.json")
    updated = fixture("shopify/orders_create_web.json")
    updated["updated_at"] = "2026-10-12T10:05:00+01:00"
    updated["financial_status"] = "partially_refunded"
    updated["refunds"] = [refund]
    send(client, drain, ishop, "orders/create", "orders_create_web", "wh-1")
    send(client, drain, ishop, "refunds/create", refund, "wh-r")
    send(client, drain, ishop, "orders/updated", updated, "wh-u")
    assert order(ishop, "5001").refunded == 20
    assert order(ishop, "5001").financial_status == "partially_refunded"


def test_stale_update_after_a_newer_one_changes_nothing(client, ishop, drain):
    newer = fixture("shopify/orders_create_web.json")
    newer["updated_at"] = "2026-10-04T10:00:00+01:00"
    newer["total_price"] = "90.00"
    newer["total_price_set"]["shop_money"]["amount"] = "90.00"
    send(client, drain, ishop, "orders/updated", newer, "wh-new")  # before its create
    send(client, drain, ishop, "orders/create", "orders_create_web", "wh-old")
    assert order(ishop, "5001").total == 90
    assert doc_of(ishop, "shopify_customer", "7001")["orders"]["lifetime_spend"] == 90.0


def test_same_webhook_id_three_times_is_stored_and_counted_once(client, ishop, drain):
    for _ in range(3):
        send(client, drain, ishop, "orders/create", "orders_create_web", "wh-dup")
    assert db.session.scalar(sa.select(sa.func.count()).select_from(WebhookDelivery)) == 1
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Order)) == 1
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Event).where(SIGNALS)) == 1
    assert doc_of(ishop, "shopify_customer", "7001")["orders"]["count"] == 1


def test_incremental_counters_equal_a_full_recompute(client, ishop, drain):
    for topic, name, wid in [
        ("orders/create", "orders_create_web", "1"),
        ("orders/create", "orders_create_pos", "2"),
        ("refunds/create", "refunds_create", "3"),
        ("orders/cancelled", "orders_cancelled", "4"),
    ]:
        send(client, drain, ishop, topic, name, wid)
    profile = profile_of(ishop, "shopify_customer", "7001")
    before = (profile.order_count, profile.lifetime_spend, profile.pos_spend, profile.acquisition_channel)
    recompute_order_counters(profile)
    assert before == (
        profile.order_count,
        profile.lifetime_spend,
        profile.pos_spend,
        profile.acquisition_channel,
    )
    assert before[:2] == (2, 106)


def test_customer_create_2025_has_no_consent_and_names_the_profile(client, ishop, drain):
    send(client, drain, ishop, "customers/create", "customers_create_2025_10", "wh-cc")
    profile = profile_of(ishop, "shopify_customer", "7001")
    assert profile.name == "Sarah Jones" and profile.country == "GB"
    assert channel_states(profile) == {"email": None, "sms": None, "whatsapp": None, "push": None}


def test_legacy_inline_consent_on_customer_update(client, ishop, drain):
    send(
        client,
        drain,
        ishop,
        "customers/update",
        "customers_update_2024_10_legacy_consent",
        "wh-cu",
        api_version="2024-10",
    )
    profile = profile_of(ishop, "shopify_customer", "7003")
    assert profile.country == "AU" and profile.province == "NSW"
    states = channel_states(profile)
    assert states["email"] == "opted_in" and states["sms"] == "opted_in"


def test_an_undated_subscribed_state_never_lifts_an_unsubscribe(client, ishop, drain):
    """Every pre-2025 customers/update restates consent inline, often with no consent_updated_at:
    dated at its arrival and counted as the customer's word, an address edit re-subscribed a
    customer who had unsubscribed from everything."""
    body = fixture("shopify/customers_update_2024_10_legacy_consent.json")
    for field in ("email_marketing_consent", "sms_marketing_consent"):
        body[field] = {"state": "subscribed", "opt_in_level": "single_opt_in", "consent_updated_at": None}
    assert (
        post_shopify(client, ishop, "customers/update", body, "wh-u1", api_version="2024-10").status_code
        == 200
    )
    drain()
    states = channel_states(profile_of(ishop, "shopify_customer", "7003"))
    assert (states["email"], states["sms"]) == ("opted_in", "opted_in")  # what Shopify says stands
    answer = client.post(
        "/api/v1/unsubscribe", json={"identifier": "email:ana@example.com"}, headers=ishop.auth
    )
    assert answer.status_code == 200
    for n in range(2):  # the address edits that follow, delivered now
        body["updated_at"] = f"2026-12-0{n + 1}T10:00:00+10:00"
        now = {"X-Shopify-Triggered-At": dt.datetime.now(dt.UTC).isoformat()}
        assert (
            post_shopify(
                client, ishop, "customers/update", body, f"wh-u{n + 2}", api_version="2024-10", headers=now
            ).status_code
            == 200
        )
        drain()
    profile = profile_of(ishop, "shopify_customer", "7003")
    states = channel_states(profile)
    assert profile.globally_unsubscribed and (states["email"], states["sms"]) == ("opted_out", "opted_out")
    records = db.session.scalars(
        sa.select(ConsentRecord).where(
            ConsentRecord.profile_id == profile.id, ConsentRecord.source == "shopify"
        )
    ).all()
    assert len(records) == 2  # one per channel: a restatement repeated adds nothing


def test_consent_topics_set_email_and_sms_and_replays_add_nothing(client, ishop, drain):
    for _ in range(2):
        send(
            client,
            drain,
            ishop,
            "customers/email_marketing_consent_update",
            "customers_email_marketing_consent_update",
            "wh-e",
        )
        send(
            client,
            drain,
            ishop,
            "customers/marketing_consent_update",
            "customers_marketing_consent_update",
            "wh-s",
        )
    profile = profile_of(ishop, "shopify_customer", "7001")
    assert channel_states(profile)["email"] == "opted_in"
    assert channel_states(profile)["sms"] == "opted_in"
    assert db.session.scalar(sa.select(sa.func.count()).select_from(ConsentRecord)) == 2


def test_latest_consent_updated_at_wins_whatever_the_arrival_order(client, ishop, drain):
    newer = fixture("shopify/customers_email_marketing_consent_update.json")
    newer["email_marketing_consent"] = {"state": "unsubscribed", "consent_updated_at": "2026-11-01T09:00:00Z"}
    send(client, drain, ishop, "customers/email_marketing_consent_update", newer, "wh-new")
    send(
        client,
        drain,
        ishop,
        "customers/email_marketing_consent_update",
        "customers_email_marketing_consent_update",
        "wh-old",
    )
    assert channel_states(profile_of(ishop, "shopify_customer", "7001"))["email"] == "opted_out"
    inline = fixture("shopify/customers_update_2024_10_legacy_consent.json")
    inline.update(id=7001, email="sarah.j.home@gmail.com", phone="+447700900123")
    inline["email_marketing_consent"]["consent_updated_at"] = "2026-11-02T09:00:00Z"
    send(client, drain, ishop, "customers/update", inline, "wh-inline", api_version="2024-10")
    assert channel_states(profile_of(ishop, "shopify_customer", "7001"))["email"] == "opted_in"


def test_customer_delete_keeps_the_profile(client, ishop, drain):
    send(client, drain, ishop, "orders/create", "orders_create_web", "wh-1")
    send(client, drain, ishop, "customers/delete", {"id": 7001}, "wh-del")
    doc = doc_of(ishop, "shopify_customer", "7001")
    assert doc["orders"]["count"] == 1
    assert "customer.deleted" in set(db.session.scalars(sa.select(Event.type).where(SIGNALS)))


def test_privacy_topics_wait_in_the_inbox_and_uninstall_is_recorded(client, ishop, drain):
    for topic, name in [
        ("customers/data_request", "customers_data_request"),
        ("customers/redact", "customers_redact"),
        ("shop/redact", "shop_redact"),
        ("app/uninstalled", "app_uninstalled"),
    ]:
        send(client, drain, ishop, topic, name, f"wh-{name}")
    rows = db.session.scalars(sa.select(WebhookDelivery)).all()
    assert len(rows) == 4 and {r.status for r in rows} == {"waiting"}
    db.session.expire_all()
    assert db.session.get(Shop, ishop.id).uninstalled_at is not None
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Event).where(SIGNALS)) == 0


def test_a_merchants_edit_of_a_customer_in_shopify_is_not_the_customer_being_seen(client, drain, ishop):
    # customers/update fires for every tag or note a merchant adds: the customer did nothing.
    created = fixture("shopify/customers_create_2025_10.json")
    send(client, drain, ishop, "customers/create", created, "wh-c1")
    profile = profile_of(ishop, "shopify_customer", str(created["id"]))
    seen = (profile.first_seen_at, profile.last_seen_at)
    tagged = {**created, "tags": "vip", "updated_at": "2026-11-01T10:00:00Z"}
    send(client, drain, ishop, "customers/update", tagged, "wh-c2")
    send(client, drain, ishop, "customers/delete", {"id": created["id"]}, "wh-c3")
    again = profile_of(ishop, "shopify_customer", str(created["id"]))
    assert (again.first_seen_at, again.last_seen_at) == seen
    assert (
        db.session.scalar(
            sa.select(sa.func.count()).select_from(Event).where(Event.type == "customer.updated")
        )
        == 1
    )


def test_only_the_purchase_is_the_buyer_being_seen_not_its_fulfilment_refund_or_cancellation(
    client, drain, ishop
):
    # A fulfilment (orders/updated), a refund and a cancellation are the merchant's doing, often
    # weeks after the purchase: the buyer's last seen stays at the purchase.
    created = fixture("shopify/orders_create_web.json")
    send(client, drain, ishop, "orders/create", created, "wh-o1")
    bought = profile_of(ishop, "email", "sarah.j.home@gmail.com").last_seen_at
    fulfilled = {**created, "updated_at": "2026-10-08T09:00:00+01:00", "fulfillment_status": "fulfilled"}
    send(client, drain, ishop, "orders/updated", fulfilled, "wh-o2")
    send(client, drain, ishop, "refunds/create", "refunds_create", "wh-o3")
    cancelled = {
        **created,
        "updated_at": "2026-10-20T09:00:00+01:00",
        "cancelled_at": "2026-10-20T09:00:00+01:00",
    }
    send(client, drain, ishop, "orders/cancelled", cancelled, "wh-o4")
    profile = profile_of(ishop, "email", "sarah.j.home@gmail.com")
    assert profile.last_seen_at == bought
    assert order(ishop, "5001").cancelled_at is not None  # the changes themselves were applied


def test_a_marketplace_order_names_its_marketplace_as_where_the_customer_came_from(client, ishop, drain):
    body = fixture("shopify/orders_create_web.json")
    body.update({"source_name": "amazon", "landing_site": None, "referring_site": None})
    send(client, drain, ishop, "orders/create", body, "wh-amazon")
    doc = doc_of(ishop, "shopify_customer", "7001")
    assert doc["orders"]["marketplace"]["count"] == 1
    assert doc["orders"]["acquisition_channel"] == "amazon"


def test_a_gift_shipped_abroad_leaves_the_buyer_in_their_own_country_and_time_zone(client, ishop, drain):
    """The shipping address is the recipient's: a London buyer sending a gift to Sydney stays in
    London, or quiet hours would be judged ten hours off."""
    gift = fixture("shopify/orders_create_web.json")
    gift["shipping_address"] = {
        **gift["shipping_address"],
        "city": "Sydney",
        "province": "New South Wales",
        "province_code": "NSW",
        "country": "Australia",
        "country_code": "AU",
    }
    assert post_shopify(client, ishop, "orders/create", gift, "wh-gift").status_code == 200
    drain()
    doc = doc_of(ishop, "email", "sarah.j.home@gmail.com")
    assert doc["timezone"] == "Europe/London"
    # With no billing address, the customer's own default address says where they live.
    gift = fixture("shopify/orders_create_web.json")
    gift.update(id=gift["id"] + 1, name="#1099", billing_address=None)
    gift["shipping_address"] = {**gift["shipping_address"], "country": "Australia", "country_code": "AU"}
    assert post_shopify(client, ishop, "orders/create", gift, "wh-gift-2").status_code == 200
    drain()
    assert doc_of(ishop, "email", "sarah.j.home@gmail.com")["timezone"] == "Europe/London"


def test_a_billing_address_without_a_country_leaves_the_buyers_place_to_the_next_address(
    client, ishop, drain
):
    """A billing address holding only a name (some wallets send that) hid the shipping country."""
    order = fixture("shopify/orders_create_web.json")
    order["customer"].pop("default_address", None)
    order["billing_address"] = {"first_name": "Sarah", "last_name": "Jones", "country_code": None}
    assert post_shopify(client, ishop, "orders/create", order, "wh-no-country").status_code == 200
    drain()
    doc = doc_of(ishop, "email", "sarah.j.home@gmail.com")
    assert (doc["country"], doc["timezone"]) == ("GB", "Europe/London")
