"""The console shell: full pages vs HTMX fragments, search, roles."""

import pytest

from app.extensions import db
from app.models import Identifier, Profile, Shop
from app.models.base import utcnow
from app.services import accounts
from app.services.shop_settings import effective_settings
from tests.helpers import PASSWORD, make_shop


def _customer(shop_id, first, last, email, phone=None):
    p = Profile(
        shop_id=shop_id, first_name=first, last_name=last, search_text=f"{first} {last} {email}".lower()
    )
    db.session.add(p)
    db.session.flush()
    now = utcnow()
    for kind, value in (("email", email), ("phone", phone)):
        if value:
            db.session.add(
                Identifier(
                    shop_id=shop_id,
                    profile_id=p.id,
                    kind=kind,
                    value=value,
                    source="test",
                    first_seen_at=now,
                    last_seen_at=now,
                )
            )
    db.session.commit()
    return p


def test_customers_list_is_a_full_page_without_htmx(client, auth, shop):
    auth.login_as(shop)
    response = client.get("/customers/")
    assert b"<html" in response.data and b'id="results"' in response.data
    assert "HX-Request" in response.headers.get("Vary", "")


def test_customers_search_returns_only_the_results_fragment_for_htmx(client, auth, shop):
    _customer(shop.id, "Sarah", "Jones", "sarah@example.net")
    _customer(shop.id, "Tom", "Baker", "tom@example.net")
    auth.login_as(shop)
    response = client.get("/customers/?q=sarah", headers={"HX-Request": "true", "HX-Trigger": "search"})
    assert b"<html" not in response.data and b"<table" in response.data
    assert b"Sarah Jones" in response.data and b"Tom Baker" not in response.data


@pytest.mark.parametrize("extra", [{"HX-Boosted": "true"}, {"HX-History-Restore-Request": "true"}])
def test_boosted_and_history_restore_requests_get_the_full_page(client, auth, shop, extra):
    auth.login_as(shop)
    response = client.get("/customers/", headers={"HX-Request": "true", **extra})
    assert b"<html" in response.data


@pytest.mark.parametrize("query", ["+447700900123", "07700 900123", "jones", "SARAH@EXAMPLE"])
def test_search_finds_by_phone_name_or_email(client, auth, shop, query):
    _customer(shop.id, "Sarah", "Jones", "sarah@example.net", "+447700900123")
    auth.login_as(shop)
    response = client.get("/customers/", query_string={"q": query}, headers={"HX-Request": "true"})
    assert b"Sarah Jones" in response.data


@pytest.mark.parametrize("query", ["GROSS", "Groß", "gross"])
def test_search_folds_case_the_way_the_language_does(client, auth, shop, query):
    """German's ß folds to ss: a name stored by ingest is found however it is typed, and one stored
    lower-cased before search texts were folded is still found as typed."""
    from app.services.ingest.common import refresh_search_text

    folded = _customer(shop.id, "Anna", "Groß", "anna@example.net")
    refresh_search_text(folded)
    older = _customer(shop.id, "Jonas", "Weiß", "jonas@example.net")
    older.search_text = "jonas weiß jonas@example.net"  # as a row written before folding
    db.session.commit()
    auth.login_as(shop)
    page = client.get("/customers/", query_string={"q": query}, headers={"HX-Request": "true"})
    assert "Anna Groß" in page.get_data(as_text=True)
    old_row = client.get("/customers/", query_string={"q": "Weiß"}, headers={"HX-Request": "true"})
    assert "Jonas Weiß" in old_row.get_data(as_text=True)


BOTH, JOSE, SEAN = ["Zoë Martin", "José Zoe"], ["José Zoe"], ["Seán O’Brien"]


@pytest.mark.parametrize(
    ("query", "expected"),
    [("zoe", BOTH), ("ZOË", BOTH), ("Jose", JOSE), ("josé", JOSE), ("sean o'brien", SEAN), ("O’brien", SEAN)],
)
def test_search_sets_accents_aside(client, auth, shop, query, expected):
    """An agent types "zoe" for Zoë and "jose" for José, or the other way round; an iPhone types
    O’Brien with a curly apostrophe for the O'Brien a checkout stored."""
    from app.services.ingest.common import refresh_search_text

    people = (
        ("Zoë", "Martin", "zm@example.net"),
        ("José", "Zoe", "jz@example.net"),
        ("Seán", "O'Brien", "s@x.ie"),
    )
    for first, last, email in people:
        refresh_search_text(_customer(shop.id, first, last, email))
    db.session.commit()
    auth.login_as(shop)
    page = client.get("/customers/", query_string={"q": query}, headers={"HX-Request": "true"})
    text = page.get_data(as_text=True).replace("&#39;", "’").replace("'", "’")
    assert [name for name in [*BOTH, *SEAN] if name in text] == expected


def test_percent_and_underscore_in_a_search_are_text_not_wildcards(client, auth, shop):
    _customer(shop.id, "Ann", "Lee", "ann_lee@example.net")
    _customer(shop.id, "Anna", "Xu", "annxlee@example.net")
    auth.login_as(shop)

    def found(query):
        page = client.get("/customers/", query_string={"q": query}, headers={"HX-Request": "true"})
        return [name for name in ("Ann Lee", "Anna Xu") if name.encode() in page.data]

    assert found("ann_lee") == ["Ann Lee"]
    assert found("%") == [] and found("_") == ["Ann Lee"]


def test_customers_list_paginates(client, auth, shop):
    for i in range(30):
        _customer(shop.id, f"Person{i:02d}", "Page", f"p{i}@example.net")
    auth.login_as(shop)
    first = client.get("/customers/", headers={"HX-Request": "true"}).data
    assert first.count(b"Page</a>") == 25 and b"Next page" in first
    second = client.get("/customers/?cursor=25", headers={"HX-Request": "true"}).data
    assert second.count(b"Page</a>") == 5


def test_a_name_with_markup_is_escaped(client, auth, shop):
    _customer(shop.id, "<script>alert(1)</script>", "X", "x@example.net")
    auth.login_as(shop)
    data = client.get("/customers/").data
    assert b"<script>alert(1)</script>" not in data and b"&lt;script&gt;" in data


def test_support_role_cannot_open_settings(client, auth, db):
    shop = make_shop("gamma.myshopify.com", role="support")
    auth.login(shop.owner_email)
    assert client.get("/customers/").status_code == 200
    assert client.get("/settings/").status_code == 403


def test_each_role_is_offered_only_the_actions_it_may_take(client, auth, db):
    """A support agent can honour "stop contacting me" but not edit time zones or settings; the
    pages offer no button that would answer 403."""
    from tests.gate_helpers import make_profile

    shop = make_shop("delta.myshopify.com", role="support")
    profile = make_profile(shop.id)
    db.session.commit()
    auth.login(shop.owner_email)
    page = client.get(f"/customers/{profile.id}").get_data(as_text=True)
    assert f"customers/{profile.id}/timezone" not in page
    consents = client.get(f"/customers/{profile.id}/consents", headers={"HX-Request": "true"})
    assert "Unsubscribe from everything" in consents.get_data(as_text=True)
    assert client.post(f"/messages/unsubscribe/{profile.id}").status_code == 302
    assert db.session.get(Profile, profile.id).globally_unsubscribed is True


def test_staff_see_the_settings_without_a_save_button_only_the_owner_may_use(client, auth, db):
    owner = make_shop("epsilon.myshopify.com")
    accounts.create_user("staff@epsilon.test", PASSWORD, owner.model, "staff")
    db.session.commit()
    auth.login("staff@epsilon.test")
    settings = client.get("/settings/").get_data(as_text=True)
    assert "Save settings" not in settings and "Only the shop's owner can change" in settings


def test_agency_user_switches_between_their_shops_only(client, auth, db):
    one = make_shop("one.myshopify.com")
    two = make_shop("two.myshopify.com")
    accounts.create_user(one.owner_email, PASSWORD, two.model, "agency")
    db.session.commit()
    auth.login(one.owner_email)
    assert b"one.myshopify.com" in client.get("/dashboard").data
    assert client.post(f"/switch-shop/{two.id}").status_code == 302
    assert b"two.myshopify.com" in client.get("/dashboard").data
    stranger = make_shop("three.myshopify.com")
    assert client.post(f"/switch-shop/{stranger.id}").status_code == 404


def test_a_page_left_open_on_one_shop_changes_nothing_in_the_shop_switched_to_in_another_tab(
    client, auth, db
):
    """The chosen shop is the session's, shared by every tab: tab A shows one.myshopify.com's
    settings, tab B switches to two, and A's Save wrote one's settings into two."""
    import re

    from app.models import Shop
    from app.services.shop_settings import effective_settings

    one = make_shop("one.myshopify.com", timezone="Europe/London")
    two = make_shop("two.myshopify.com", timezone="America/New_York")
    accounts.create_user(one.owner_email, PASSWORD, two.model, "owner")
    db.session.commit()
    auth.login(one.owner_email)
    page = client.get("/settings/").get_data(as_text=True)  # tab A, drawn for shop one
    assert re.search(rf'name="c360_shop" value="{one.id}"', page)
    assert f'"X-C360-Shop": "{one.id}"' in page
    form = dict(re.findall(r'<input[^>]*name="([^"]+)"[^>]*value="([^"]*)"', page))
    form.update(timezone="Europe/London", cap_global_daily="3")
    client.post(f"/switch-shop/{two.id}")  # tab B
    refused = client.post("/settings/", data=form)
    assert refused.status_code == 409 and "two.myshopify.com" in refused.get_data(as_text=True)
    htmx = client.post("/settings/", data=form, headers={"HX-Request": "true", "X-C360-Shop": str(one.id)})
    assert htmx.status_code == 412 and "Nothing was changed" in htmx.get_data(as_text=True)
    search = client.get("/customers/?q=a", headers={"HX-Request": "true", "X-C360-Shop": str(one.id)})
    assert search.status_code == 412  # a live search in tab A does not fill it with shop two's customers
    db.session.expire_all()
    assert effective_settings(db.session.get(Shop, two.id))["timezone"] == "America/New_York"
    form["c360_shop"] = str(two.id)  # reloaded: drawn for shop two now
    assert client.post("/settings/", data=form).status_code in (200, 302)


def test_a_copy_of_the_session_cookie_stops_working_at_sign_out_and_at_a_new_password(
    client, auth, shop, app
):
    """Sessions were named by user id alone: a copied cookie outlived "Sign out" and a new password."""
    from app.services.accounts import set_password

    def copied_session() -> str:
        return client.get_cookie("session").value

    def with_cookie(value: str) -> int:
        """A request from another browser holding ``value`` (in an app context of its own, as a web
        process serves it: the test's would hold the signed-in user from earlier requests)."""
        other = app.test_client()
        other.set_cookie("session", value)
        with app.app_context():
            return other.get("/customers/").status_code

    auth.login_as(shop)
    before_sign_out = copied_session()
    assert with_cookie(before_sign_out) == 200
    auth.logout()
    assert with_cookie(before_sign_out) == 302  # to the sign-in page
    auth.login_as(shop)
    before_new_password = copied_session()
    set_password(shop.owner_email, "a-new-passw0rd")
    db.session.commit()
    assert with_cookie(before_new_password) == 302
    assert auth.login(shop.owner_email, "a-new-passw0rd").status_code == 302
    assert client.get("/customers/").status_code == 200


def test_logout_requires_csrf_and_ends_the_session(client, auth, shop):
    auth.login_as(shop)
    assert client.post("/logout", csrf=False).status_code == 400
    assert client.get("/customers/").status_code == 200
    auth.logout()
    assert client.get("/customers/").status_code == 302


SETTINGS_FORM = {
    "timezone": "Europe/London",
    "cap_global_daily": "4",
    "cap_email": "3",
    "cap_sms": "2",
    "cap_whatsapp": "1",
    "cap_push": "2",
    "fatigue_threshold": "0.6",
    "quiet_start": "22:00",
    "quiet_end": "07:30",
    "blocked_values": "Family@Example.net\n0000000000",
    "max_identifiers_per_kind": "4",
    "max_people_per_identifier": "2",
    "at_risk_days": "60",
    "churned_days": "120",
    "regions": "AU 20:00-08:00",
}


def test_the_settings_form_saves_every_setting_including_the_identity_caps(client, auth, db):
    shop = make_shop(plan="agency")
    auth.login_as(shop)
    assert client.post("/settings/", data=SETTINGS_FORM).status_code == 302
    saved = effective_settings(db.session.get(Shop, shop.id))
    assert saved["identity"] == {
        "blocked_values": ["family@example.net", "0000000000"],
        "max_identifiers_per_kind": 4,
        "max_people_per_identifier": 2,
    }
    assert saved["caps"] == {"global_daily": 4, "email": 3, "sms": 2, "whatsapp": 1, "push": 2}
    assert (saved["fatigue_threshold"], saved["timezone"]) == (0.6, "Europe/London")
    assert saved["quiet_hours"] == {
        "start": "22:00",
        "end": "07:30",
        "regions": {"AU": {"start": "20:00", "end": "08:00"}},
    }
    assert saved["lifecycle"]["at_risk_days"] == 60
    page = client.get("/settings/").data.decode()
    assert 'name="max_identifiers_per_kind" value="4"' in page
    assert 'name="max_people_per_identifier" value="2"' in page
    # The form lists every region: one taken off the list is removed (the API merges regions).
    assert client.post("/settings/", data={**SETTINGS_FORM, "regions": "NZ 22:00-07:00"}).status_code == 302
    saved = effective_settings(db.session.get(Shop, shop.id))
    assert saved["quiet_hours"]["regions"] == {"NZ": {"start": "22:00", "end": "07:00"}}


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        (
            "max_people_per_identifier",
            "1",
            "People sharing an identifier must be a whole number from 2 to 1,000",
        ),
        (
            "max_identifiers_per_kind",
            "0",
            "Identifiers of one kind must be a whole number from 1 to 1,000",
        ),
        ("max_identifiers_per_kind", "ten", "Identifiers of one kind must be a whole number"),
    ],
)
def test_a_bad_identity_cap_on_the_settings_form_is_refused_with_its_reason_and_nothing_saved(
    client, auth, db, field, value, reason
):
    shop = make_shop(plan="agency")
    auth.login_as(shop)
    answer = client.post("/settings/", data={**SETTINGS_FORM, field: value})
    assert answer.status_code == 422
    assert reason in answer.data.decode()
    db.session.expire_all()
    assert effective_settings(db.session.get(Shop, shop.id))["identity"]["max_people_per_identifier"] == 3


def test_a_country_given_two_lines_of_quiet_hours_is_refused_not_settled_by_the_last_line(client, auth, db):
    shop = make_shop(plan="agency")
    auth.login_as(shop)
    answer = client.post("/settings/", data={**SETTINGS_FORM, "regions": "AU 20:00-08:00\nau 22:00-06:00"})
    assert answer.status_code == 422 and "AU has two lines of quiet hours" in answer.data.decode()
    db.session.expire_all()
    assert effective_settings(db.session.get(Shop, shop.id))["quiet_hours"].get("regions", {}) == {}


def test_settings_form_without_csrf_is_rejected(client, auth, shop):
    auth.login_as(shop)
    assert client.post("/settings/", data={"cap_email": "5"}, csrf=False).status_code == 400


def test_new_lifecycle_windows_restage_every_customer_without_waiting_for_the_night(client, auth, db, drain):
    """A buyer quiet for 40 days is at risk under a 30-day window; saving a 60-day window queues
    the recompute, so the customer, the list and the dashboard move to the new windows now."""
    import datetime as dt

    from tests.enrichment_helpers import add_order, add_profile

    shop = make_shop(plan="agency")
    now = utcnow()
    buyer = add_profile(shop.id, seen_days_ago=40, now=now)
    add_order(buyer, now - dt.timedelta(days=40))
    buyer.lifecycle_stage = "at_risk"
    db.session.commit()
    auth.login_as(shop)
    saved = client.post("/settings/", data=SETTINGS_FORM, follow_redirects=True).get_data(as_text=True)
    assert "being recomputed with the new windows" in saved
    drain()
    db.session.expire_all()
    assert db.session.get(Profile, buyer.id).lifecycle_stage == "converted"
    again = client.post("/settings/", data=SETTINGS_FORM, follow_redirects=True).get_data(as_text=True)
    assert "Settings saved." in again and "recomputed" not in again  # the same windows: nothing to redo


def test_a_refused_settings_save_keeps_what_was_typed_in_the_other_fields(client, auth, db):
    shop = make_shop(plan="agency")
    auth.login_as(shop)
    typed = {**SETTINGS_FORM, "cap_email": "9", "max_people_per_identifier": "1"}  # the second is refused
    page = client.post("/settings/", data=typed)
    html = page.get_data(as_text=True)
    assert page.status_code == 422 and "max_people_per_identifier" in html
    assert 'name="cap_email" value="9"' in html and "Family@Example.net" in html
    assert effective_settings(db.session.get(Shop, shop.id))["caps"]["email"] != 9  # nothing saved


@pytest.mark.parametrize("zone", ["Europe/" + "x" * 260, "localtime"])
def test_the_settings_form_refuses_a_time_zone_that_is_no_iana_zone_with_its_reason(client, auth, db, zone):
    shop = make_shop(plan="agency")
    auth.login_as(shop)
    response = client.post("/settings/", data={**SETTINGS_FORM, "timezone": zone})
    assert response.status_code == 422 and "unknown time zone" in response.get_data(as_text=True)
    assert effective_settings(db.session.get(Shop, shop.id))["timezone"] != zone


def test_a_zone_stored_before_zones_were_checked_is_passed_over_and_the_form_saves(client, auth, db):
    """A stored ``localtime`` was shown in the form, and every save was refused until it was retyped."""
    shop = make_shop(plan="agency", timezone="Europe/Paris")
    model = db.session.get(Shop, shop.id)
    model.settings = {**(model.settings or {}), "timezone": "localtime"}
    db.session.commit()
    assert effective_settings(model)["timezone"] == "Europe/Paris"  # the shop's own, next in line
    auth.login_as(shop)
    html = client.get("/settings/").get_data(as_text=True)
    assert 'value="localtime"' not in html and 'value="Europe/Paris"' in html
    form = {**SETTINGS_FORM, "timezone": "Europe/Paris"}
    assert client.post("/settings/", data=form).status_code in (302, 303)


def test_an_expired_sign_in_form_shows_the_form_again_with_the_reason(client):
    """CSRFProtect refused the post before the view ran: Werkzeug's bare 400 page, no form, no way
    back; the login page's own "The form expired" could never show."""
    answer = client.post("/login", data={"email": "a@b.co", "password": "x"}, csrf=False)
    page = answer.get_data(as_text=True)
    assert answer.status_code == 400
    assert "The form expired" in page and 'name="password"' in page and 'value="a@b.co"' in page


def test_an_expired_console_form_says_so_and_leads_back_without_acting(client, auth, shop):
    auth.login_as(shop)
    referrer = "http://localhost/settings/"
    answer = client.post("/settings/", data={"cap_email": "5"}, headers={"Referer": referrer}, csrf=False)
    page = answer.get_data(as_text=True)
    assert answer.status_code == 400
    assert "The form expired" in page and 'href="/settings/"' in page
    htmx = client.post("/settings/", data={"cap_email": "5"}, headers={"HX-Request": "true"}, csrf=False)
    assert htmx.status_code == 400 and "<p" in htmx.get_data(as_text=True)
    assert "The form expired" in htmx.get_data(as_text=True)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"cap_email": "-1"}, "Email cap must be a whole number from 0 to 1,000"),
        ({"cap_email": "abc"}, "Email cap must be a whole number"),
        ({"fatigue_threshold": "2"}, "Fatigue threshold must be a number in (0, 1]"),
        ({"quiet_start": "9pm"}, "Quiet hours from must be a time like 21:00"),
        ({"at_risk_days": "100", "churned_days": "50"}, "At risk after must be shorter than Churned after"),
    ],
)
def test_a_refused_setting_is_named_as_the_form_names_it(client, auth, db, change, reason):
    """The reasons named the API's keys (caps.email, quiet_hours.start) on a form that shows none."""
    shop = make_shop(plan="agency")
    auth.login_as(shop)
    answer = client.post("/settings/", data={**SETTINGS_FORM, **change})
    page = answer.get_data(as_text=True)
    assert answer.status_code == 422 and reason in page
    assert "caps." not in page and "quiet_hours." not in page and "lifecycle." not in page


def test_a_time_zone_typed_with_spaces_around_it_is_taken(client, auth, db):
    shop = make_shop(plan="agency")
    auth.login_as(shop)
    assert (
        client.post("/settings/", data={**SETTINGS_FORM, "timezone": "  America/New_York "}).status_code
        == 302
    )
    db.session.expire_all()
    assert effective_settings(db.session.get(Shop, shop.id))["timezone"] == "America/New_York"
