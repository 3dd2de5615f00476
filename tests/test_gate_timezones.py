"""The customer's time zone fallback chain, and the gate loader that walks it from the database."""

from __future__ import annotations

import datetime as dt

import pytest

from app.services import gate
from app.services.timezones import country_zones, is_valid_zone, resolve_zone
from tests.gate_helpers import make_profile

SHOP = {"shop_timezone": "Europe/London", "shop_country": "GB"}


@pytest.mark.parametrize(
    ("profile_tz", "country", "province", "phones", "zones", "country_out", "source"),
    [
        ("Australia/Sydney", "GB", None, ["+447911123456"], ("Australia/Sydney",), "AU", "profile"),
        ("Not/AZone", "AU", "NSW", [], ("Australia/Sydney",), "AU", "address"),
        (None, "AU", "wa", [], ("Australia/Perth",), "AU", "address"),
        (None, "FR", None, ["+12125550123"], ("Europe/Paris",), "FR", "address"),
        (None, None, None, ["+61412345678"], country_zones("AU"), "AU", "phone"),
        (None, None, None, ["+12125550123"], country_zones("US"), "US", "phone"),
        (None, None, None, [], ("Europe/London",), "GB", "shop"),
    ],
)
def test_zone_fallback_chain(profile_tz, country, province, phones, zones, country_out, source):
    found = resolve_zone(
        profile_timezone=profile_tz, country=country, province=province, phones=phones, **SHOP
    )
    assert (found.zones, found.country, found.source) == (zones, country_out, source)


def test_a_customer_of_the_shops_own_multi_zone_country_keeps_the_shops_calendar_day():
    """A Sydney shop's customer known only by an Australian mobile: quiet hours are kept in every
    Australian zone, and their day (daily caps) is Sydney's, not Lord Howe Island's."""
    found = resolve_zone(
        profile_timezone=None,
        country=None,
        province=None,
        phones=["+61412345678"],
        shop_timezone="Australia/Sydney",
        shop_country="AU",
    )
    assert found.zones[0] == "Australia/Sydney" and set(found.zones) == set(country_zones("AU"))
    assert str(found.primary) == "Australia/Sydney"


def test_multi_zone_countries_list_every_zone():
    us = country_zones("US")
    assert {"America/New_York", "America/Los_Angeles", "Pacific/Honolulu"} <= set(us)
    assert country_zones("GB") == ("Europe/London",)
    assert country_zones("ZZ") == ()


def test_loader_reads_zone_from_phone_when_nothing_else_is_known(db, shop):
    profile = make_profile(shop.id, phone="+12125550123", timezone=None)
    # 14:00 UTC in January: 09:00 in New York but 06:00 on the west coast.
    morning = dt.datetime(2026, 1, 15, 14, tzinfo=dt.UTC)
    decision = gate.check(shop.model, profile.id, "sms", morning)
    assert decision == gate.GateDecision(False, "quiet_hours", dt.datetime(2026, 1, 15, 19, tzinfo=dt.UTC))


def test_kosovo_and_the_other_countries_zone_tab_leaves_out_have_their_zone():
    """XK (Kosovo), AC and TA are phone regions with no line in zone.tab: a Kosovan customer got
    the shop's quiet hours (a London shop texted her at 21:30 her time)."""
    assert country_zones("XK") == ("Europe/Belgrade",)
    assert country_zones("AC") == country_zones("TA") == ("Atlantic/St_Helena",)
    found = resolve_zone(profile_timezone=None, country="XK", province=None, phones=[], **SHOP)
    assert (found.zones, found.source) == (("Europe/Belgrade",), "address")


def test_an_address_in_a_country_of_no_known_zone_falls_through_to_the_phone(db, shop):
    profile = make_profile(shop.id, phone="+12125550123", timezone=None)
    profile.country = "BV"  # Bouvet Island: a real code, and no zone in zone.tab
    db.session.commit()
    morning = dt.datetime(2026, 1, 15, 14, tzinfo=dt.UTC)  # 09:00 in New York, 14:00 in London
    assert gate.check(shop.model, profile.id, "sms", morning).reason == "quiet_hours"


def test_loader_prefers_the_address_over_the_phone(db, shop):
    profile = make_profile(shop.id, phone="+12125550123", timezone=None)
    profile.country, profile.province = "AU", "NSW"
    db.session.commit()
    ten_utc = dt.datetime(2026, 11, 18, 10, tzinfo=dt.UTC)  # 21:00 in Sydney
    assert gate.check(shop.model, profile.id, "sms", ten_utc).reason == "quiet_hours"


def test_the_profile_shows_the_zone_the_gate_keeps_its_quiet_hours_in(db, client, shop):
    from app.services.profile_view import profile_document

    by_address = make_profile(shop.id, phone="+12125550123", timezone=None)
    by_address.country, by_address.province = "AU", "NSW"
    by_phone = make_profile(shop.id, "bob@shopper.test", phone="+12125550124", timezone=None)
    db.session.commit()
    assert profile_document(shop.model, by_address)["timezone"] == "Australia/Sydney"
    assert profile_document(shop.model, by_phone)["timezone"].startswith("America/")
    page = client.get(f"/api/v1/profiles/{by_address.id}", headers=shop.auth).get_json()
    assert page["timezone"] == "Australia/Sydney"


def test_regional_quiet_hours_need_starter_and_apply_by_country(db, client, shop):
    from tests.helpers import make_shop

    free = make_shop("free.myshopify.com", plan="free")
    regions = {"quiet_hours": {"regions": {"AU": {"start": "20:00", "end": "08:00"}}}}
    assert client.put("/api/v1/settings", json=regions, headers=free.auth).status_code == 403
    assert client.put("/api/v1/settings", json=regions, headers=shop.auth).status_code == 200
    profile = make_profile(shop.id, timezone="Australia/Sydney")
    half_past_eight = dt.datetime(2026, 11, 18, 9, 30, tzinfo=dt.UTC)  # 20:30 AEDT
    assert gate.check(shop.model, profile.id, "sms", half_past_eight).reason == "quiet_hours"


def test_gate_many_answers_for_this_shops_profiles_only(db, shop, other_shop):
    mine = [make_profile(shop.id, f"p{i}@shopper.test", None).id for i in range(3)]
    theirs = make_profile(other_shop.id, "x@shopper.test", None).id
    noon = dt.datetime(2026, 11, 18, 12, tzinfo=dt.UTC)
    answers = gate.gate_many(shop.model, [*mine, theirs], "email", noon)
    assert set(answers) == set(mine)
    assert all(a.allowed for a in answers.values())


@pytest.mark.parametrize("name", ["Europe/London", "UTC", "America/Argentina/Buenos_Aires", "US/Eastern"])
def test_an_iana_zone_name_is_a_zone(name):
    assert is_valid_zone(name)


@pytest.mark.parametrize(
    "name",
    [
        "localtime",
        "Factory",
        "posixrules",
        "Europe/" + "x" * 260,
        "europe/london",
        "zone.tab",
        "",
        None,
        3,
        ["UTC"],
    ],
)
def test_the_servers_own_zone_tzdatas_files_and_what_no_file_can_be_are_not_zones(name):
    assert not is_valid_zone(name)


def test_a_number_the_phone_library_calls_invalid_still_names_its_country():
    """+44 7700 900xxx (a reserved range) named no country, and its customer got the shop's zone."""
    from app.services.timezones import phone_country

    assert phone_country("+447700900222") == "GB"
    assert phone_country("+61491570006") == "AU"
    assert phone_country("+999123") is None
