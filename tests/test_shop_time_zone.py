"""The shop's time zone is the one its settings name, on every screen and in every answer.

An owner who sets the shop's zone in Settings (the store moved, or its Shopify zone was wrong)
changed what the gate kept quiet hours in, but the profile document still named the shop's
original zone as the customer's, and the consoles showed times in it.
"""

from __future__ import annotations

import datetime as dt

from app.extensions import db
from app.models import Merge, Shop
from app.services.merges import undo_refusals
from app.services.messaging import send_message
from tests.gate_helpers import make_profile

NEW_YORK = "America/New_York"
MOMENT = dt.datetime(2026, 1, 15, 17, 0, tzinfo=dt.UTC)  # noon in New York, 17:00 in London


def move_shop(client, shop) -> None:
    answer = client.put("/api/v1/settings", headers=shop.auth, json={"timezone": NEW_YORK})
    assert answer.status_code == 200, answer.get_data(as_text=True)


def test_a_customer_with_no_zone_of_their_own_is_in_the_zone_the_settings_name(client, shop):
    profile = make_profile(shop.id, "ann@shopper.test", phone=None, timezone=None)
    move_shop(client, shop)
    doc = client.get(f"/api/v1/profiles/{profile.id}", headers=shop.auth).get_json()
    assert doc["timezone"] == NEW_YORK


def test_the_consoles_show_times_in_the_zone_the_settings_name(client, auth, shop):
    profile = make_profile(shop.id, "ann@shopper.test", phone=None, timezone=None)
    send_message(db.session.get(Shop, shop.id), profile.id, "email", "manual", now=MOMENT)
    move_shop(client, shop)
    auth.login_as(shop)
    page = client.get("/messages/").get_data(as_text=True)
    assert "15 Jan 2026 12:00 EST" in page


def test_an_undo_refusal_names_its_deadline_in_the_zone_the_settings_name(client, shop):
    move_shop(client, shop)
    model = db.session.get(Shop, shop.id)
    made = dt.datetime(2026, 1, 10, 17, 0, tzinfo=dt.UTC)
    row = Merge(
        shop_id=shop.id, winner_id=1, loser_id=2, created_at=made, undo_deadline=made + dt.timedelta(days=7)
    )
    refusal = undo_refusals(model, [row], now=made + dt.timedelta(days=8))[None]
    assert "17 Jan 2026 12:00 EST" in refusal.text


def test_a_customers_sections_show_the_same_zone_loaded_alone_or_with_the_page(client, auth, shop):
    """A section loaded lazily showed the shop's zone, the same section on a full page the zone of the
    customer's phone: one customer, two clocks. Both are the customer's zone, as the gate keeps it."""
    profile = make_profile(shop.id, "ann@shopper.test", phone="+447911123456", timezone=None)
    send_message(db.session.get(Shop, shop.id), profile.id, "email", "manual", now=MOMENT)
    move_shop(client, shop)
    auth.login_as(shop)
    alone = client.get(f"/customers/{profile.id}/messages", headers={"HX-Request": "true"})
    whole = client.get(f"/customers/{profile.id}/messages")
    assert alone.status_code == whole.status_code == 200
    for page in (alone.get_data(as_text=True), whole.get_data(as_text=True)):
        assert "15 Jan 2026 17:00 GMT" in page  # her UK phone's zone, not New York's


def test_the_dashboard_and_campaign_sends_show_times_in_the_shops_zone(client, auth, shop):
    from app.services.campaign_sends import start_send

    profile = make_profile(shop.id, "ann@shopper.test", phone=None, timezone=None)
    move_shop(client, shop)
    start_send(db.session.get(Shop, shop.id), [profile.id], "email", campaign_id="c1", now=MOMENT)
    auth.login_as(shop)
    page = client.get("/messages/").get_data(as_text=True)
    assert "15 Jan 2026 12:00 EST" in page and "UTC" not in page
