"""The customer 360 page: full page and every HTMX fragment, heavy, hostile and erased profiles."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from app.extensions import db
from app.models import ConsentRecord, ConsentState, ConsentText, Event, Merge, Message, Profile, User
from app.models.base import utcnow
from app.services.customer_activity import EVENTS_PAGE
from tests.enrichment_helpers import add_event, add_order
from tests.enrichment_helpers import add_profile as _add_profile

SECTIONS = ("identities", "orders", "timeline", "consents", "messages", "predictions")
HX = {"HX-Request": "true"}


def add_profile(shop_id: int, **kw) -> Profile:
    return _add_profile(shop_id, now=utcnow(), **kw)


def _ago(days: float) -> dt.datetime:
    return utcnow() - dt.timedelta(days=days)


@pytest.fixture()
def rich(shop):
    """A profile with orders on every channel, consents with wording, messages and a merge."""
    p = add_profile(
        shop.id, first_name="Sarah", last_name="Jones", seen_days_ago=60, timezone="Australia/Sydney"
    )
    other = add_profile(shop.id, first_name="S", seen_days_ago=70)
    add_order(p, _ago(50), "120.00")
    add_order(p, _ago(20), "35.00", channel="pos", location_id="3001")
    add_order(p, _ago(5), "80.00", channel="marketplace", source="amazon", refunded="10.00")
    add_event(p, "email.opened", _ago(3), "email")
    add_event(p, "product_viewed", _ago(2))
    text = ConsentText(
        shop_id=shop.id, sha256="a" * 64, version=2, body="Yes, text me offers. Reply STOP to opt out."
    )
    db.session.add(text)
    db.session.flush()
    rec = ConsentRecord(
        shop_id=shop.id,
        profile_id=p.id,
        channel="sms",
        status="opted_in",
        source="checkout",
        captured_at=_ago(40),
        consent_text_id=text.id,
    )
    db.session.add(rec)
    db.session.flush()
    db.session.add(
        ConsentState(shop_id=shop.id, profile_id=p.id, channel="sms", status="opted_in", record_id=rec.id)
    )
    db.session.add(
        Message(
            shop_id=shop.id,
            profile_id=p.id,
            channel="sms",
            source="campaign",
            status="sent",
            campaign_id="spring",
        )
    )
    db.session.add(
        Message(
            shop_id=shop.id,
            profile_id=p.id,
            channel="sms",
            source="campaign",
            status="blocked",
            reason="quiet_hours",
        )
    )
    db.session.add(
        Merge(
            shop_id=shop.id,
            winner_id=p.id,
            loser_id=other.id,
            reason="same_email",
            undo_deadline=_ago(-7),
            actor="user:1",
        )
    )
    other.merged_into_id = p.id
    db.session.commit()
    return p


def test_full_page_has_header_and_lazy_sections(client, auth, shop, rich, drain):
    auth.login_as(shop)
    client.post("/api/v1/enrichment/run", headers=shop.auth)
    drain()
    html = client.get(f"/customers/{rich.id}").get_data(as_text=True)
    assert "Sarah Jones" in html and 'class="badge loyal"' in html
    assert "RFM 5-" in html and "churn risk" in html and "fatigue 0.1" in html
    assert "sms ✓" in html and "email ?" in html
    assert "Australia/Sydney" in html  # the profile's own time zone, which its dates are in
    for name in SECTIONS:
        assert f'hx-get="/customers/{rich.id}/{name}" hx-trigger="load"' in html
    assert "/static/vendor/chart.umd.js" in html and "cdn" not in html.lower()


def test_header_alone_as_htmx_fragment(client, auth, shop, rich):
    auth.login_as(shop)
    html = client.get(f"/customers/{rich.id}", headers=HX).get_data(as_text=True)
    assert "Sarah Jones" in html and "<html" not in html and "hx-trigger" not in html


EXPECTED = {
    "identities": "merged into",
    "orders": "location 3001",
    "timeline": "product viewed",
    "consents": "Yes, text me offers. Reply STOP to opt out.",
    "messages": "quiet_hours",
    "predictions": "Predicted value",
}


def test_each_section_as_fragment_and_as_full_page(client, auth, shop, rich):
    auth.login_as(shop)
    for name, expected in EXPECTED.items():
        fragment = client.get(f"/customers/{rich.id}/{name}", headers=HX)
        assert fragment.status_code == 200 and "HX-Request" in fragment.headers["Vary"]
        text = fragment.get_data(as_text=True)
        assert expected in text and "<html" not in text, name
        page = client.get(f"/customers/{rich.id}/{name}").get_data(as_text=True)
        assert "<html" in page and expected in page and "Sarah Jones" in page, name
        assert f'hx-get="/customers/{rich.id}/{name}"' not in page  # filled in, not lazy


def test_orders_section_splits_online_pos_and_marketplace(client, auth, shop, rich):
    auth.login_as(shop)
    html = client.get(f"/customers/{rich.id}/orders", headers=HX).get_data(as_text=True)
    assert "<strong>Online</strong> 1 order · 120.00 GBP" in html
    assert "<strong>POS</strong> 1 order · 35.00 GBP" in html and "usually location 3001" in html
    assert "<strong>Marketplace</strong> 1 order · 70.00 GBP" in html and "(amazon)" in html


def test_profile_with_no_orders_renders(client, auth, shop):
    p = add_profile(shop.id, first_name="Nobody", seen_days_ago=1)
    db.session.commit()
    auth.login_as(shop)
    assert "Nobody" in client.get(f"/customers/{p.id}").get_data(as_text=True)
    for name in SECTIONS:
        assert client.get(f"/customers/{p.id}/{name}", headers=HX).status_code == 200
    assert "No orders yet." in client.get(f"/customers/{p.id}/orders", headers=HX).get_data(as_text=True)


def test_profile_with_ten_thousand_events_renders_a_page_of_them(client, auth, shop):
    p = add_profile(shop.id, first_name="Busy", seen_days_ago=200)
    start = utcnow()
    db.session.execute(
        sa.insert(Event),
        [
            {
                "shop_id": shop.id,
                "profile_id": p.id,
                "type": "web.page_viewed",
                "channel": "web",
                "source": "bulk",
                "external_id": f"b{i}",
                "identifiers": {},
                "properties": {},
                "occurred_at": start - dt.timedelta(hours=i / 2),
                "received_at": start,
            }
            for i in range(10_000)
        ],
    )
    db.session.commit()
    auth.login_as(shop)
    assert client.get(f"/customers/{p.id}").status_code == 200
    html = client.get(f"/customers/{p.id}/timeline", headers=HX).get_data(as_text=True)
    # 10,000 half-hourly views span ~208 days, all inside the 26-week chart but the oldest week.
    assert html.count("<tr><td>") == EVENTS_PAGE and "Older →" in html
    assert '"web": [' in html
    second = client.get(f"/customers/{p.id}/timeline?page=1", headers=HX).get_data(as_text=True)
    assert "← Newer" in second


def test_a_script_name_is_shown_as_text(client, auth, shop):
    name = "<script>alert(1)</script>"
    p = add_profile(shop.id, first_name=name, search_text=name, seen_days_ago=1)
    db.session.commit()
    auth.login_as(shop)
    html = client.get(f"/customers/{p.id}").get_data(as_text=True)
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    listing = client.get("/customers/?q=alert").get_data(as_text=True)
    assert "&lt;script&gt;" in listing and "<script>alert" not in listing


def test_page_renders_after_erasure(client, auth, shop, rich):
    rich.first_name = rich.last_name = None
    rich.search_text = None
    rich.erased_at = utcnow()
    db.session.commit()
    auth.login_as(shop)
    html = client.get(f"/customers/{rich.id}").get_data(as_text=True)
    assert "Erased customer" in html and "Personal data erased" in html and "Sarah" not in html
    for name in SECTIONS:
        assert client.get(f"/customers/{rich.id}/{name}", headers=HX).status_code == 200


def test_a_merged_away_customer_page_redirects_for_now_to_todays_survivor(client, auth, shop):
    oldest, older, newest = (add_profile(shop.id, seen_days_ago=n) for n in (3, 2, 1))
    newest.merged_into_id, older.merged_into_id = older.id, oldest.id
    db.session.commit()
    auth.login_as(shop)
    answer = client.get(f"/customers/{newest.id}")
    assert answer.status_code == 302  # not 301, which browsers keep after an undo
    assert answer.headers["Location"] == f"/customers/{oldest.id}"


def test_a_merged_away_customers_sections_follow_the_survivor(client, auth, shop):
    """A page opened before a merge loads its sections after it: they showed a hollow profile."""
    survivor, merged = (add_profile(shop.id, seen_days_ago=n) for n in (3, 1))
    merged.merged_into_id = survivor.id
    db.session.commit()
    auth.login_as(shop)
    plain = client.get(f"/customers/{merged.id}/identities")
    assert plain.status_code == 302 and plain.headers["Location"] == f"/customers/{survivor.id}/identities"
    # Over HTMX, the whole page goes to the survivor: its header would name the merged-away profile.
    lazy = client.get(f"/customers/{merged.id}/orders", headers=HX)
    assert lazy.headers["HX-Redirect"] == f"/customers/{survivor.id}"


def test_another_shops_profile_is_404(client, auth, shop, other_shop):
    p = add_profile(other_shop.id, first_name="Theirs", seen_days_ago=1)
    db.session.commit()
    auth.login_as(shop)
    assert client.get(f"/customers/{p.id}").status_code == 404
    assert client.get(f"/customers/{p.id}/orders", headers=HX).status_code == 404


def test_predictions_are_hidden_below_pro(client, auth, db, drain):
    from tests.helpers import make_shop

    free = make_shop("free.myshopify.com", plan="free")
    p = add_profile(free.id, first_name="Fay", seen_days_ago=10)
    add_order(p, _ago(10))
    add_order(p, _ago(5))
    db.session.commit()
    client.post("/api/v1/enrichment/run", headers=free.auth)
    drain()
    auth.login_as(free)
    html = client.get(f"/customers/{p.id}/predictions", headers=HX).get_data(as_text=True)
    assert "Predictions come with the Pro plan" in html
    assert client.get(f"/api/v1/profiles/{p.id}", headers=free.auth).get_json()["predicted_ltv_90d"] is None


def test_staff_set_a_customers_time_zone_by_hand(client, auth, shop):
    from app.extensions import db
    from app.models import Profile

    profile = Profile(shop_id=shop.id, first_name="Tz")
    db.session.add(profile)
    db.session.commit()
    auth.login_as(shop)
    response = client.post(f"/customers/{profile.id}/timezone", data={"timezone": "Australia/Sydney"})
    assert response.status_code == 303
    db.session.expire_all()
    saved = db.session.get(Profile, profile.id)
    assert (saved.timezone, saved.timezone_source) == ("Australia/Sydney", "manual")
    assert b"Australia/Sydney" in client.get(f"/customers/{profile.id}").data
    client.post(f"/customers/{profile.id}/timezone", data={"timezone": "Mars/Olympus"})
    db.session.expire_all()
    assert db.session.get(Profile, profile.id).timezone == "Australia/Sydney"
    assert (
        client.post(f"/customers/{profile.id}/timezone", data={"timezone": "UTC"}, csrf=False).status_code
        == 400
    )


LONG_ZONE = "Europe/" + "x" * 260 + " jane.doe@example.com +44 7700 900123"


@pytest.mark.parametrize(
    "zone",
    [LONG_ZONE, "localtime", "Factory", "posixrules"],
    ids=["too-long", "localtime", "Factory", "posixrules"],
)
def test_a_time_zone_that_is_no_iana_zone_is_refused_with_a_message_not_a_500(client, auth, shop, zone):
    """260 characters raised OSError (a 500); the server's own zone and tzdata's files were saved."""
    profile = add_profile(shop.id, first_name="Tz")
    db.session.commit()
    auth.login_as(shop)
    response = client.post(f"/customers/{profile.id}/timezone", data={"timezone": zone})
    assert response.status_code == 303
    assert "unknown time zone" in client.get(response.location).get_data(as_text=True)
    db.session.expire_all()
    assert db.session.get(Profile, profile.id).timezone is None


def test_a_zone_stored_before_zones_were_checked_is_read_as_no_zone_not_a_500(client, auth, shop):
    """Stored by an older release: the pages, the gate and enrichment fall back as for no zone."""
    profile = add_profile(shop.id, first_name="Tz")
    db.session.execute(sa.update(Profile).where(Profile.id == profile.id).values(timezone="localtime"))
    shop.model.settings = {"timezone": LONG_ZONE}
    db.session.commit()
    auth.login_as(shop)
    for url in (
        f"/customers/{profile.id}",
        f"/customers/{profile.id}/timeline",
        "/deliveries/",
        "/messages/",
    ):
        assert client.get(url).status_code == 200, url
    run = client.post("/api/v1/enrichment/run", headers=shop.auth, json={"as_of": "2026-01-31"})
    assert run.status_code == 202, run.get_json()


def test_the_consents_section_offers_a_global_unsubscribe_that_turns_every_channel_off(client, auth, shop):
    from app.extensions import db
    from app.models import Profile
    from app.models.base import utcnow
    from app.services.consent import channel_states, record_consent

    profile = Profile(shop_id=shop.id, first_name="Una")
    db.session.add(profile)
    db.session.flush()
    record_consent(profile, "sms", "opted_in", source="checkout", captured_at=utcnow(), text="Texts, please")
    db.session.commit()
    auth.login_as(shop)
    section = client.get(f"/customers/{profile.id}/consents", headers={"HX-Request": "true"}).data
    assert f"/messages/unsubscribe/{profile.id}".encode() in section
    assert client.post(f"/messages/unsubscribe/{profile.id}").status_code == 302
    db.session.expire_all()
    refreshed = db.session.get(Profile, profile.id)
    assert refreshed.globally_unsubscribed and channel_states(refreshed)["sms"] == "opted_out"


def test_a_stage_change_or_an_event_naming_no_channel_is_not_shown_as_web(client, auth, shop):
    p = add_profile(shop.id, seen_days_ago=1)
    at = utcnow() - dt.timedelta(days=1)
    add_event(p, "lifecycle.changed", at, source="c360")
    add_event(p, "support.ticket_opened", at, source="api")
    add_event(p, "web.page_viewed", at, "web", source="pixel")
    db.session.commit()
    auth.login_as(shop)
    html = client.get(f"/customers/{p.id}/timeline", headers=HX).get_data(as_text=True)
    assert html.count("<td>web</td>") == 1 and html.count("<td>—</td>") == 2
    assert '"other": [' in html and '"web": [' in html  # the chart counts the API event apart, not the stage


def test_merge_history_names_who_merged_and_offers_undo_only_where_it_would_be_taken(client, auth, shop):
    from app.services import merges
    from tests.gate_helpers import make_profile

    kept, first, second = (make_profile(shop.id, f"{w}@shopper.test", None) for w in ("k", "f", "s"))
    owner = db.session.scalar(sa.select(User).where(User.email == shop.owner_email))
    owner.name = "Priya Shah"
    older = merges.merge(shop.model, kept, first, reason="manual", actor=f"user:{owner.id}")
    merges.merge(shop.model, kept, second, reason="manual", actor=f"user:{owner.id}")
    db.session.commit()
    auth.login_as(shop)
    html = client.get(f"/customers/{kept.id}/identities", headers={"HX-Request": "true"}).get_data(
        as_text=True
    )
    assert html.count("by Priya Shah") == 2 and "user:" not in html
    assert html.count("can be undone until") == 1 and f"undo #{older.id + 1} first" in html


def test_a_date_reads_without_a_zone_and_a_time_of_day_with_it():
    """ "28 Oct 2026 GMT" named a zone for a value with no time of day in it."""
    import zoneinfo

    from app.services.timezones import local_time

    london, moment = zoneinfo.ZoneInfo("Europe/London"), dt.datetime(2026, 10, 28, 9, 30, tzinfo=dt.UTC)
    assert local_time(moment, london, "%d %b %Y") == "28 Oct 2026"
    assert local_time(moment, london) == "28 Oct 2026 09:30 GMT"
    assert local_time(moment.isoformat(), london, "%d %b %I:%M %p") == "28 Oct 09:30 AM GMT"


def test_the_consents_section_names_the_address_each_consent_was_given_for(client, auth, shop):
    """Messages go to the address an opt-in names; the page shows which one, as the customer gave it."""
    from app.services.consent import record_consent

    profile = add_profile(shop.id, first_name="Eve")
    record_consent(
        profile,
        "email",
        "opted_in",
        source="checkout",
        captured_at=utcnow(),
        text="News",
        identifier="email:Eve@Mail.uk",
    )
    record_consent(
        profile, "sms", "opted_out", source="twilio", captured_at=utcnow(), identifier="+447700900123"
    )
    db.session.commit()
    auth.login_as(shop)
    section = client.get(f"/customers/{profile.id}/consents", headers={"HX-Request": "true"}).get_data(
        as_text=True
    )
    assert "for eve@mail.uk" in section and "for +447700900123" in section


def test_a_refused_time_zone_is_shown_again_as_typed_with_the_form_open(client, auth, shop):
    """The field came back empty after "unknown time zone": the staff member retyped it from memory."""
    profile = add_profile(shop.id, first_name="Tz")
    db.session.commit()
    auth.login_as(shop)
    response = client.post(f"/customers/{profile.id}/timezone", data={"timezone": "europe/paris"})
    page = client.get(response.location).get_data(as_text=True)
    assert "unknown time zone" in page
    assert 'value="europe/paris"' in page and '<details class="tz-edit" open>' in page


def test_a_prediction_an_order_has_overtaken_is_not_called_overdue(client, auth, shop):
    """After a new order the last run's next-order date lay before it, shown as "overdue"."""
    p = add_profile(shop.id, first_name="Quick", seen_days_ago=40)
    add_order(p, _ago(40), "50.00")
    p.churn_risk, p.rfm_r, p.rfm_f, p.rfm_m, p.enriched_at = 0.5, 4, 1, 1, _ago(1)
    p.predicted_next_order_at, p.predicted_ltv_90d = _ago(2), 30
    add_order(p, _ago(0.01), "50.00")
    db.session.commit()
    auth.login_as(shop)
    text = client.get(f"/customers/{p.id}/predictions", headers=HX).get_data(as_text=True)
    assert "overdue" not in text and "They have ordered since the last prediction" in text
    assert "Scored " in text


def test_a_buyer_not_predicted_yet_is_not_told_they_have_no_purchase_history(client, auth, shop):
    p = add_profile(shop.id, first_name="Once", seen_days_ago=3)
    add_order(p, _ago(3), "80.00")
    db.session.commit()
    auth.login_as(shop)
    text = client.get(f"/customers/{p.id}/predictions", headers=HX).get_data(as_text=True)
    assert "No purchase history" not in text and "Not predicted yet" in text


def test_a_customer_known_by_email_alone_is_headed_by_it_not_as_an_unknown_visitor(client, auth, shop):
    from app.services.identifiers import Ident
    from app.services.resolution import resolve

    p = resolve(shop.model, [Ident("email", "only.email@mail.uk")], source="test", seen_at=_ago(1))
    db.session.commit()
    auth.login_as(shop)
    html = client.get(f"/customers/{p.id}").get_data(as_text=True)
    assert "<h1>only.email@mail.uk</h1>" in html and "Unknown visitor" not in html


def test_an_orders_page_past_the_last_says_so_not_that_there_are_no_orders(client, auth, shop, rich):
    auth.login_as(shop)
    text = client.get(f"/customers/{rich.id}/orders?page=999", headers=HX).get_data(as_text=True)
    assert "No orders yet" not in text and "No orders on this page" in text
