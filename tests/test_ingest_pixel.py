"""The storefront pixel: single events, batches, linking, CORS, validation and rate limits."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa

from app.extensions import db
from app.models import Event, WebhookDelivery
from tests.ingest_support import SIGNALS, fixture, ishop_fixture, post_pixel, profile_of

ishop = ishop_fixture


def count(model) -> int:
    """Rows of ``model``; of events, those made of what was sent (not a derived stage change)."""
    stmt = sa.select(sa.func.count()).select_from(model)
    if model is Event:
        stmt = stmt.where(SIGNALS)
    return db.session.scalar(stmt)


def test_single_page_view_creates_a_visitor_profile(client, ishop, drain):
    response = post_pixel(client, fixture("pixel/page_viewed.json"))
    drain()
    assert response.status_code == 200 and response.get_json()["accepted"] == 1
    profile = profile_of(ishop, "web_client", "c-phone-sarah")
    event = db.session.scalar(sa.select(Event))
    assert (event.type, event.channel, event.profile_id) == ("web.page_viewed", "web", profile.id)
    assert event.properties["url"] == "https://demo.myshopify.com/"


def test_batch_stores_each_event_once(client, ishop, drain):
    batch = fixture("pixel/batch.json")
    for _ in range(2):
        assert post_pixel(client, batch).status_code == 200
    drain()
    assert count(WebhookDelivery) == 2 and count(Event) == 2
    types = set(db.session.scalars(sa.select(Event.type).where(SIGNALS)))
    assert types == {"web.product_viewed", "web.search_submitted"}
    search = db.session.scalar(sa.select(Event).where(Event.type == "web.search_submitted"))
    assert search.properties["query"] == "linen"


def test_exit_intent_form_links_a_normalised_email_to_the_browser(client, ishop, drain):
    post_pixel(client, fixture("pixel/page_viewed.json"))
    post_pixel(client, fixture("pixel/form_submitted_exit_intent.json"))
    drain()
    by_cookie = profile_of(ishop, "web_client", "c-phone-sarah")
    assert profile_of(ishop, "email", "sarah.jones@acme-corp.com").id == by_cookie.id
    assert "sarah.jones@acme-corp.com" in by_cookie.search_text
    form_event = db.session.scalar(sa.select(Event).where(Event.type == "web.form_submitted"))
    assert form_event.identifiers["email"] == ["sarah.jones@acme-corp.com"]
    assert "Sarah.Jones" not in json.dumps(form_event.properties)


def test_checkout_completed_links_checkout_email_and_national_phone(client, ishop, drain):
    event = fixture("pixel/checkout_completed.json")
    event["data"]["checkout"]["phone"] = "07911 123456"
    post_pixel(client, event)
    drain()
    profile = profile_of(ishop, "web_client", "c-laptop-sarah")
    assert profile_of(ishop, "email", "sarah.j.home@gmail.com").id == profile.id
    assert profile_of(ishop, "phone", "+447911123456").id == profile.id


def test_logged_in_customer_links_the_browser_to_the_shopify_customer(client, ishop, drain):
    event = fixture("pixel/page_viewed.json")
    event["customer"] = {"id": "gid://shopify/Customer/7001"}
    post_pixel(client, event)
    drain()
    assert (
        profile_of(ishop, "shopify_customer", "7001").id
        == profile_of(ishop, "web_client", "c-phone-sarah").id
    )


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda e: e.pop("clientId"), "clientId is required"),
        (lambda e: e.update(name="teleported"), "unknown event name"),
        (lambda e: e.update(timestamp="yesterday"), "timestamp"),
        (lambda e: e.update(data=[1, 2]), "data must be an object"),
        (lambda e: e.update(id=""), "id is required"),
        (lambda e: e.update(shop=None), "shop is required"),
    ],
)
def test_a_malformed_event_beside_a_valid_one_is_dead_lettered_with_its_reason(client, ishop, mutate, reason):
    event = fixture("pixel/page_viewed.json")
    mutate(event)
    response = post_pixel(client, [fixture("pixel/page_viewed.json"), event])
    # The batch is the pixel's format: a 200, the valid event stored, the broken one kept dead.
    assert response.status_code == 200
    [refused] = response.get_json()["refused"]
    assert reason in refused and refused.startswith("events[1]: ")
    assert (response.get_json()["accepted"], response.get_json()["dead_lettered"]) == (1, 1)
    statuses = sorted(db.session.scalars(sa.select(WebhookDelivery.status)))
    assert len(statuses) == 2 and statuses.count("dead") == 1
    dead = db.session.scalar(sa.select(WebhookDelivery).where(WebhookDelivery.status == "dead"))
    assert dead.last_error == f"BadPayload: {refused}" and dead.external_id.startswith("refused:")


def test_a_batch_with_no_valid_event_stores_nothing(client, ishop):
    broken = fixture("pixel/page_viewed.json")
    broken.pop("clientId")
    response = post_pixel(client, [broken, {**broken, "id": "other"}])
    assert response.status_code == 400
    assert response.get_json()["error"]["message"] == (
        "events[0]: clientId is required (a non-empty string) (and 1 more refused)"
    )
    assert count(WebhookDelivery) == 0


@pytest.mark.parametrize("raw", [b"", b"{", b"null", b"[]", b"42", b'"text"', b"\xff\xfe"])
def test_garbage_bodies_are_400(client, ishop, raw):
    response = client.post("/collect", data=raw, content_type="application/json")
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "bad_payload"


def test_unknown_shop_in_the_pixel_is_404(client, ishop):
    event = fixture("pixel/page_viewed.json")
    event["shop"] = "nobody.myshopify.com"
    assert post_pixel(client, event).status_code == 404


def test_cors_preflight_and_response_headers_allow_the_storefront(client, ishop):
    origin = "https://shop.example-storefront.com"
    preflight = client.open(
        "/collect",
        method="OPTIONS",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )
    assert preflight.status_code == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == origin
    assert "POST" in preflight.headers["Access-Control-Allow-Methods"]
    assert "Content-Type" in preflight.headers["Access-Control-Allow-Headers"]
    posted = post_pixel(client, fixture("pixel/page_viewed.json"), origin=origin)
    assert posted.headers["Access-Control-Allow-Origin"] == origin
    assert "Origin" in posted.headers["Vary"]
    bad = post_pixel(client, {"nope": 1}, origin=origin)
    assert bad.status_code == 400 and bad.headers["Access-Control-Allow-Origin"] == origin


def test_one_client_over_the_rate_limit_gets_429_and_others_do_not(app, client, ishop):
    app.config["C360_PIXEL_RATE_PER_MINUTE"] = 3
    try:
        events = []
        for n in range(4):
            event = fixture("pixel/page_viewed.json")
            event.update(id=f"rl-{n}", clientId="c-greedy-rate-test")
            events.append(event)
        assert post_pixel(client, events[:3]).status_code == 200
        limited = post_pixel(client, events[3])
        assert limited.status_code == 429
        assert limited.get_json()["error"]["code"] == "rate_limited"
        assert 1 <= int(limited.headers["Retry-After"]) <= 60  # when the next minute's count starts
        other = fixture("pixel/page_viewed.json")
        other.update(id="rl-other", clientId="c-polite-rate-test")
        assert post_pixel(client, other).status_code == 200
    finally:
        app.config["C360_PIXEL_RATE_PER_MINUTE"] = 600


def test_a_client_over_the_limit_is_refused_though_its_events_ride_in_another_clients_batch(
    app, client, ishop
):
    """The whole batch was charged to its first event's client: a client over the limit got
    through by putting another, polite client's event first."""
    app.config["C360_PIXEL_RATE_PER_MINUTE"] = 3
    try:

        def view(n: int, client_id: str) -> dict:
            return {**fixture("pixel/page_viewed.json"), "id": f"mix-{n}", "clientId": client_id}

        assert post_pixel(client, [view(n, "c-greedy-mixed") for n in range(3)]).status_code == 200
        mixed = post_pixel(client, [view(3, "c-polite-mixed"), view(4, "c-greedy-mixed")])
        assert mixed.status_code == 429
        assert count(WebhookDelivery) == 3
        assert post_pixel(client, view(5, "c-polite-mixed")).status_code == 200
    finally:
        app.config["C360_PIXEL_RATE_PER_MINUTE"] = 600


def test_a_pixel_batch_over_the_cap_is_400_naming_the_cap_and_its_size(client, ishop):
    """The pixel batches on our side, so a cap is fine; the answer says what to change."""
    events = [{**fixture("pixel/page_viewed.json"), "id": f"pv-{n}"} for n in range(501)]
    response = post_pixel(client, events)
    assert response.status_code == 400
    assert response.get_json()["error"]["message"] == (
        "a batch holds at most 500 events, this one 501: send it in smaller batches"
    )
    assert count(WebhookDelivery) == 0


def test_a_browser_clock_years_behind_dates_the_event_when_it_arrived(client, ishop, drain):
    """A page view stamped 1999 made its visitor a customer "since 1999", and churned while browsing."""
    view = fixture("pixel/page_viewed.json")
    view.update({"id": "pv-1999", "clientId": "c-slow-clock", "timestamp": "1999-01-01T00:00:00.000Z"})
    assert post_pixel(client, view).status_code == 200
    drain()
    profile = profile_of(ishop, "web_client", "c-slow-clock")
    arrived = db.session.scalar(sa.select(WebhookDelivery.received_at))
    assert profile.first_seen_at == profile.last_seen_at == arrived
