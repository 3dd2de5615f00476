"""Values a provider should never send, refused with the reason: at the door (400) when the
body is checked there, else dead-lettered at the first attempt (never retried to no end)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
import sqlalchemy as sa

from app.models import Event, Order, Profile, WebhookDelivery
from app.models.base import utcnow
from app.services.ingest.common import BadPayload, load_json, money, parse_time, whole
from tests.ingest_support import (
    fixture,
    make_ingest_shop,
    post_pixel,
    post_shopify,
    sendgrid_post,
    twilio_post,
    whatsapp_post,
)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b'{"total": NaN}', "not valid JSON"),
        (b'{"total": -Infinity}', "not valid JSON"),
        (b'{"total": 1e999}', "not valid JSON"),
        (b'{"note": "a\\u0000b"}', "NUL character"),
        (b'{"note\\u0000": 1}', "NUL character"),
        (b'{"note": "\\ud800"}', "lone surrogate"),
        (b'["\\udc00 alone"]', "lone surrogate"),
    ],
)
def test_json_that_no_database_column_can_hold_is_refused(raw, reason):
    with pytest.raises(BadPayload, match=reason):
        load_json(raw)


@pytest.mark.parametrize("raw", [b"[" * 100_000 + b"]" * 100_000, b'{"a":' * 5_000 + b"1" + b"}" * 5_000])
def test_json_nested_past_the_parsers_depth_is_refused_not_a_500(client, db, raw):
    with pytest.raises(BadPayload, match="nested too deeply"):
        load_json(raw)
    shop = make_ingest_shop()
    answer = client.post("/api/v1/events", data=raw, content_type="application/json", headers=shop.auth)
    assert answer.status_code == 400 and "nested too deeply" in answer.get_json()["error"]["message"]


def test_json_with_an_escaped_emoji_or_the_text_backslash_u0000_is_taken():
    assert load_json(b'{"note": "\\ud83d\\ude00", "path": "C:\\\\u0000"}') == {
        "note": "\N{GRINNING FACE}",
        "path": "C:\\u0000",
    }


@pytest.mark.parametrize("value", [float("nan"), float("inf"), 10**30, "99999999999999999999", 1e300])
def test_a_time_past_any_calendar_is_a_bad_payload(value):
    with pytest.raises(BadPayload, match="created_at"):
        parse_time(value, "created_at")


@pytest.mark.parametrize("value", ["NaN", "Infinity", 10**13, [], {"amount": "1"}, True])
def test_an_amount_that_is_no_money_is_a_bad_payload(value):
    with pytest.raises(BadPayload, match="not an amount"):
        money(value)


@pytest.mark.parametrize(
    "value", ["0001-01-01T00:00:00Z", "0001-01-01T00:00:00+05:00", "1969-12-31T23:59:59Z", -1]
)
def test_a_time_before_1970_is_a_bad_payload(value):
    with pytest.raises(BadPayload, match="created_at is before 1970"):
        parse_time(value, "created_at")


def test_amounts_and_counts_that_are_fine_still_parse():
    assert money("19.999") == Decimal("20.00") and money(5) == Decimal("5.00")
    assert whole("3", "quantity") == 3 and whole(2.0, "quantity") == 2 and whole(None, "quantity") == 0


@pytest.mark.parametrize("value", ["two", "--5", 2.5, [], {"n": 1}, True, 2**40])
def test_a_count_that_is_not_a_whole_number_is_a_bad_payload(value):
    with pytest.raises(BadPayload, match="quantity must be a whole number"):
        whole(value, "quantity")


def test_a_sendgrid_event_named_by_a_list_is_a_400_not_a_500(client, db):
    shop = make_ingest_shop()
    answer = sendgrid_post(client, shop.domain, [{"event": [], "email": "a@b.co", "sg_event_id": "e1"}])
    assert answer.status_code == 400 and "unknown event" in answer.get_json()["error"]["message"]


def test_a_whatsapp_post_whose_changes_are_not_a_list_is_a_400(client, db):
    shop = make_ingest_shop()
    body = fixture("whatsapp/inbound_text.json")
    body["entry"][0]["changes"] = True
    answer = whatsapp_post(client, shop.domain, body)
    assert answer.status_code == 400 and "changes must be a list" in answer.get_json()["error"]["message"]


def test_an_api_event_with_an_identifier_or_channel_that_is_an_object_is_a_400(client, db):
    shop = make_ingest_shop()
    event = {
        "type": "support.touch",
        "occurred_at": "2026-10-05T09:00:00Z",
        "identifiers": {"email": "a@b.co"},
    }
    changes = (
        ({"channel": {}}, "channel must be one of"),
        ({"identifiers": {"email": ["a"]}}, "must be text"),
    )
    for change, reason in changes:
        answer = client.post("/api/v1/events", json={**event, **change}, headers=shop.auth)
        assert answer.status_code == 400 and reason in answer.get_json()["error"]["message"]


def test_an_order_whose_discount_codes_are_a_number_is_a_400_with_the_reason(client, db):
    shop = make_ingest_shop()
    order = fixture("shopify/orders_create_web.json")
    order["discount_codes"] = 3  # the door reads every value applying the order would
    answer = post_shopify(client, shop, "orders/create", order, "wh-lines")
    assert answer.status_code == 400
    assert answer.get_json()["error"]["message"] == "discount_codes must be a list, not int"
    assert db.session.scalar(sa.select(sa.func.count()).select_from(WebhookDelivery)) == 0


@pytest.mark.parametrize(
    ("topic", "fixture_name", "change", "reason"),
    [
        ("customers/update", "customers_create_2025_10", {"email": ["a@b.co"]}, "email must be text"),
        ("customers/update", "customers_create_2025_10", {"id": [7001]}, "shopify_customer must be text"),
        ("customers/update", "customers_create_2025_10", {"id": 7001.5}, "shopify_customer must be text"),
        ("orders/updated", "orders_create_web", {"updated_at": "not a time"}, "updated_at"),
        ("orders/create", "orders_create_web", {"id": True}, "order.id is required"),
        ("orders/cancelled", "orders_create_web", {"cancelled_at": "soon"}, "cancelled_at"),
        ("refunds/create", "refunds_create", {"created_at": None, "processed_at": None}, "created_at"),
        (
            "customers/marketing_consent_update",
            "customers_marketing_consent_update",
            {"customer_id": {}},
            "shopify_customer must be text",
        ),
    ],
)
def test_a_shopify_body_with_a_value_applying_it_would_refuse_is_a_400_not_a_dead_letter(
    client, db, topic, fixture_name, change, reason
):
    shop = make_ingest_shop()
    body = {**fixture(f"shopify/{fixture_name}.json"), **change}
    answer = post_shopify(client, shop, topic, body, "wh-shape")
    assert answer.status_code == 400, answer.get_data(as_text=True)
    assert reason in answer.get_json()["error"]["message"]
    assert db.session.scalar(sa.select(sa.func.count()).select_from(WebhookDelivery)) == 0


def test_a_consent_state_that_is_not_text_is_a_400(client, db):
    shop = make_ingest_shop()
    body = fixture("shopify/customers_marketing_consent_update.json")
    body["sms_marketing_consent"] = {**body["sms_marketing_consent"], "state": ["x"]}
    answer = post_shopify(client, shop, "customers/marketing_consent_update", body, "wh-state")
    assert answer.status_code == 400 and "state" in answer.get_json()["error"]["message"]


def test_a_pixel_event_whose_customer_email_is_a_list_is_a_400(client, db):
    make_ingest_shop()
    event = {**fixture("pixel/page_viewed.json"), "customer": {"email": ["x@y.co"]}}
    answer = client.post("/collect", json=event)
    assert answer.status_code == 400 and "email must be text" in answer.get_json()["error"]["message"]


def test_a_sendgrid_batch_keeps_its_valid_events_and_dead_letters_the_broken_one(client, db):
    shop = make_ingest_shop()
    events = fixture("sendgrid/events.json")
    events[1]["timestamp"] = "yesterday"
    answer = sendgrid_post(client, shop.domain, events)
    assert answer.status_code == 200
    body = answer.get_json()
    assert body["refused"] == ["events[1]: timestamp is not an ISO 8601 time: 'yesterday'"]
    assert (body["accepted"], body["dead_lettered"]) == (len(events) - 1, 1)
    stored = dict(db.session.execute(sa.select(WebhookDelivery.external_id, WebhookDelivery.status)).all())
    dead = {ext for ext, status in stored.items() if status == "dead"}
    assert dead == {f"refused:{events[1]['sg_event_id']}"}
    assert set(stored) - dead == {e["sg_event_id"] for n, e in enumerate(events) if n != 1}
    # Were SendGrid to send the batch again, nothing would be stored twice.
    again = sendgrid_post(client, shop.domain, events).get_json()
    assert (again["accepted"], again["duplicates"], again["dead_lettered"]) == (0, len(events), 0)


def test_a_whatsapp_notification_keeps_its_valid_message_beside_a_broken_one(client, db):
    shop = make_ingest_shop()
    body = fixture("whatsapp/inbound_text.json")
    messages = body["entry"][0]["changes"][0]["value"]["messages"]
    messages.append({**messages[0], "id": "wamid.broken", "timestamp": "soon"})
    answer = whatsapp_post(client, shop.domain, body)
    assert answer.status_code == 200 and answer.get_json()["accepted"] == 1
    assert "items[1]: message.timestamp" in answer.get_json()["refused"][0]
    stored = dict(db.session.execute(sa.select(WebhookDelivery.external_id, WebhookDelivery.status)).all())
    assert set(stored) == {messages[0]["id"], "refused:wamid.broken"}
    assert stored["refused:wamid.broken"] == "dead" and stored[messages[0]["id"]] != "dead"


@pytest.mark.parametrize("ref", ["m-\N{SUPERSCRIPT TWO}", "m-" + "9" * 30, 2**70, {"id": 5}, [1]])
def test_a_sendgrid_event_whose_message_reference_names_no_message_is_counted_by_its_email(
    client, db, drain, ref
):
    # c360_message_id is our custom arg; anything else in it (a forged or mangled value) names no
    # message of ours, and the event still counts for its recipient.
    shop = make_ingest_shop()
    event = {**fixture("sendgrid/events.json")[1], "c360_message_id": ref}
    assert sendgrid_post(client, shop.domain, [event]).status_code == 200
    drain()
    row = db.session.scalar(sa.select(WebhookDelivery))
    assert (row.status, row.last_error) == ("processed", None)
    opened = db.session.scalars(sa.select(Event.profile_id).where(Event.type == "email.opened")).all()
    assert len(opened) == 1 and opened[0] is not None


def test_a_browser_clock_years_ahead_does_not_date_the_visit_in_the_future(client, db, drain):
    shop = make_ingest_shop()
    view = {**fixture("pixel/page_viewed.json"), "id": "px-2030", "timestamp": "2030-01-01T00:00:00.000Z"}
    assert post_pixel(client, view).status_code == 200
    drain()
    row = db.session.scalar(sa.select(WebhookDelivery))
    event = db.session.scalar(sa.select(Event).where(Event.type == "web.page_viewed"))
    assert event.occurred_at == row.received_at  # when it reached us, the latest it can have happened
    assert db.session.get(Profile, event.profile_id).last_seen_at == row.received_at
    assert shop.id == event.shop_id


def test_a_sendgrid_event_stamped_minutes_ahead_keeps_its_time(client, db, drain):
    shop = make_ingest_shop()
    ahead = utcnow() + dt.timedelta(minutes=2)  # another server's clock, a little ahead of ours
    event = {**fixture("sendgrid/events.json")[1], "timestamp": int(ahead.timestamp())}
    assert sendgrid_post(client, shop.domain, [event]).status_code == 200
    drain()
    opened = db.session.scalar(sa.select(Event).where(Event.type == "email.opened"))
    assert opened.occurred_at == ahead.replace(microsecond=0)


def test_an_api_event_dated_in_the_future_is_a_400(client, db):
    shop = make_ingest_shop()
    body = {"type": "push.opened", "occurred_at": "2030-01-01T00:00:00Z", "identifiers": {"email": "a@b.co"}}
    answer = client.post("/api/v1/events", json=body, headers=shop.auth)
    assert answer.status_code == 400
    assert answer.get_json()["error"]["message"].startswith("occurred_at is in the future")
    assert db.session.scalar(sa.select(sa.func.count()).select_from(WebhookDelivery)) == 0


def test_a_pixel_event_with_an_email_too_long_to_be_one_is_applied_to_its_browser(client, db, drain):
    shop = make_ingest_shop()
    view = {**fixture("pixel/page_viewed.json"), "id": "px-long", "customer": {"email": "a" * 400 + "@x.co"}}
    assert post_pixel(client, view).status_code == 200
    drain()
    row = db.session.scalar(sa.select(WebhookDelivery))
    assert (row.status, row.last_error) == ("processed", None)
    event = db.session.scalar(sa.select(Event).where(Event.type == "web.page_viewed"))
    assert event.profile_id is not None and shop.id == event.shop_id


def test_an_api_consent_for_an_email_too_long_to_be_one_is_a_422(client, db):
    shop = make_ingest_shop()
    answer = client.post(
        "/api/v1/unsubscribe", json={"identifier": "email:" + "a" * 400 + "@x.co"}, headers=shop.auth
    )
    assert answer.status_code == 422 and "not a usable identifier" in answer.get_json()["error"]["message"]


def test_an_order_or_refund_id_longer_than_any_shopify_id_is_a_400(client, db):
    shop = make_ingest_shop()
    order = {**fixture("shopify/orders_create_web.json"), "id": "9" * 65}
    answer = post_shopify(client, shop, "orders/create", order, "wh-long-id")
    assert answer.status_code == 400 and "order.id is longer than 64" in answer.get_json()["error"]["message"]
    refund = {**fixture("shopify/refunds_create.json"), "order_id": "8" * 65}
    answer = post_shopify(client, shop, "refunds/create", refund, "wh-long-refund")
    assert answer.status_code == 400 and "at most 64 characters" in answer.get_json()["error"]["message"]


def test_an_order_with_a_long_location_and_customer_name_is_applied_with_them_cut(client, db, drain):
    shop = make_ingest_shop()
    order = fixture("shopify/orders_create_pos.json")
    order["location_id"] = "L" * 100
    order["customer"]["first_name"] = "F" * 300
    assert post_shopify(client, shop, "orders/create", order, "wh-long-fields").status_code == 200
    drain()
    row = db.session.scalar(sa.select(WebhookDelivery))
    assert (row.status, row.last_error) == ("processed", None)
    stored = db.session.scalar(sa.select(Order))
    assert stored.location_id == "L" * 64 and len(stored.customer_name) == 255


def test_provider_ids_and_names_longer_than_their_columns_are_400s(client, db):
    from urllib.parse import urlencode

    shop = make_ingest_shop()
    answers = {
        "twilio sid": twilio_post(
            client,
            shop.domain,
            urlencode({"MessageSid": "S" * 65, "To": "+447700900123", "MessageStatus": "sent"}).encode(),
        ),
        "twilio status": twilio_post(
            client,
            shop.domain,
            urlencode({"MessageSid": "SM1", "To": "+447700900123", "MessageStatus": "x" * 80}).encode(),
        ),
        "sendgrid id": sendgrid_post(
            client, shop.domain, [{**fixture("sendgrid/events.json")[1], "sg_event_id": "e" * 256}]
        ),
        "pixel name": post_pixel(
            client, {**fixture("pixel/page_viewed.json"), "type": "custom", "name": "n" * 57}
        ),
    }
    reasons = {what: (a.status_code, a.get_json()["error"]["message"]) for what, a in answers.items()}
    assert reasons == {
        "twilio sid": (400, "MessageSid is longer than 64 characters"),
        "twilio status": (400, f"MessageStatus {'x' * 40!r} is not a status"),
        "sendgrid id": (400, "events[0]: sg_event_id is longer than 255 characters"),
        "pixel name": (400, f"event: custom event name {'n' * 57!r} is not allowed"),
    }
    assert db.session.scalar(sa.select(sa.func.count()).select_from(WebhookDelivery)) == 0
    custom = {**fixture("pixel/page_viewed.json"), "id": "px-56", "type": "custom", "name": "n" * 56}
    assert post_pixel(client, custom).status_code == 200  # "web." + 56 fills events.type exactly


def _order_with(change: dict) -> dict:
    order = fixture("shopify/orders_create_web.json")
    for key, value in change.items():
        if key == "line":
            order["line_items"][0].update(value)
        else:
            order[key] = value
    order.pop("total_price_set", None)
    return order


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"total_price": "-50.00"}, "total_price must not be negative"),
        ({"subtotal_price": "-1.00"}, "subtotal_price must not be negative"),
        ({"line": {"quantity": -2}}, "line_items.quantity must not be negative"),
        ({"line": {"price": "-84.00", "price_set": None}}, "line_items.price must not be negative"),
        ({"currency": "POUNDS"}, "currency must be a three-letter code"),
        ({"currency": 826}, "currency must be a three-letter code"),
        ({"email": ["a@b.co"]}, "email must be text"),
        ({"created_at": "2099-01-01T00:00:00Z"}, "created_at is in the future"),
        ({"processed_at": "2099-01-01T00:00:00Z"}, "processed_at is in the future"),
    ],
)
def test_an_order_no_shop_could_have_taken_is_a_400_with_the_reason(client, db, change, reason):
    """A negative total or quantity would count a purchase as money given back, and an order dated
    2099 would keep its buyer loyal for decades: the door refuses them, as it refuses 1970."""
    shop = make_ingest_shop()
    answer = post_shopify(client, shop, "orders/create", _order_with(change), "wh-values")
    assert answer.status_code == 400, answer.get_data(as_text=True)
    assert reason in answer.get_json()["error"]["message"]
    assert db.session.scalar(sa.select(sa.func.count()).select_from(WebhookDelivery)) == 0


def test_a_refund_giving_back_a_negative_amount_is_a_400(client, db):
    shop = make_ingest_shop()
    refund = fixture("shopify/refunds_create.json")
    refund["transactions"][0]["amount"] = "-20.00"
    answer = post_shopify(client, shop, "refunds/create", refund, "wh-negative-refund")
    assert answer.status_code == 400
    assert "transactions.amount must not be negative" in answer.get_json()["error"]["message"]


def test_a_time_past_the_calendars_end_is_named_so_not_before_1970():
    with pytest.raises(BadPayload, match="past the calendar"):
        parse_time("9999-12-31T23:59:59-05:00", "created_at")
