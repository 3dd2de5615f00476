"""The consent, gate and messages API: answers, 4xx errors, tenancy and unsubscribe propagation."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from app.extensions import db
from app.models import ConsentRecord, ConsentText, Event, Identifier, Message, Profile
from tests.gate_helpers import CHANNELS, NOON, TEXT, make_profile

AT = NOON.isoformat()


def just_now() -> str:
    """A consent's captured_at a moment from now: after whatever the test did before it."""
    from app.models.base import utcnow

    return (utcnow() + dt.timedelta(seconds=1)).isoformat()


def check(client, shop, profile_id, channel, at=AT):
    body = {"profile_id": profile_id, "channel": channel, "at": at}
    return client.post("/api/v1/gate/check", json=body, headers=shop.auth)


def every_channel(client, shop, profile_id):
    return {c: check(client, shop, profile_id, c).get_json()["reason"] for c in CHANNELS}


def test_gate_check_answers_allowed_and_is_read_only(client, shop):
    profile = make_profile(shop.id)
    answer = check(client, shop, profile.id, "sms")
    assert answer.status_code == 200
    assert answer.get_json() == {"allowed": True, "reason": None, "retry_at": None}
    late = check(client, shop, profile.id, "sms", at="2026-11-18T22:30:00+00:00").get_json()
    assert late == {"allowed": False, "reason": "quiet_hours", "retry_at": "2026-11-19T09:00:00+00:00"}
    from app.extensions import db

    assert db.session.scalar(sa.select(sa.func.count()).select_from(Message)) == 0


def test_gate_check_of_an_earlier_moment_counts_only_the_sends_made_by_then(client, shop):
    profile = make_profile(shop.id)
    evening = NOON + dt.timedelta(hours=6)
    for _ in range(3):
        sent = client.post(
            "/api/v1/messages",
            json={"profile_id": profile.id, "channel": "email", "source": "manual"},
            headers=shop.auth,
        )
        assert sent.get_json()["status"] == "sent"
    # The API stamps sends with the clock: re-date them to the evening, after the moment checked.
    db.session.execute(sa.update(Message).values(created_at=evening, sent_at=evening))
    db.session.commit()
    assert check(client, shop, profile.id, "email").get_json()["allowed"] is True
    later = check(client, shop, profile.id, "email", at=(evening + dt.timedelta(minutes=1)).isoformat())
    assert later.get_json()["reason"] == "global_cap_reached:3/3"


def test_api_unsubscribe_refuses_every_channel_at_once(client, shop):
    profile = make_profile(shop.id)
    response = client.post(
        "/api/v1/unsubscribe", json={"identifier": "email:ann@shopper.test"}, headers=shop.auth
    )
    assert response.status_code == 200
    assert response.get_json()["globally_unsubscribed"] is True
    assert every_channel(client, shop, profile.id) == dict.fromkeys(CHANNELS, "global_unsubscribe")
    sent = client.post(
        "/api/v1/messages",
        json={"profile_id": profile.id, "channel": "email", "source": "campaign"},
        headers=shop.auth,
    )
    assert sent.status_code == 200
    assert sent.get_json()["status"] == "blocked"
    assert sent.get_json()["reason"] == "global_unsubscribe"


def test_api_unsubscribe_by_phone_finds_the_same_person(client, shop):
    profile = make_profile(shop.id)
    response = client.post(
        "/api/v1/unsubscribe", json={"identifier": "phone:+44 7911 123456"}, headers=shop.auth
    )
    assert response.get_json()["profile_id"] == profile.id
    assert every_channel(client, shop, profile.id) == dict.fromkeys(CHANNELS, "global_unsubscribe")


def test_api_opt_out_refuses_that_channel_only(client, shop):
    profile = make_profile(shop.id)
    body = {
        "identifier": "email:ann@shopper.test",
        "channel": "sms",
        "status": "opted_out",
        "source": "api",
        "captured_at": NOON.isoformat(),
    }
    response = client.post("/api/v1/consents", json=body, headers=shop.auth)
    assert response.status_code == 200
    assert response.get_json()["states"]["sms"] == "opted_out"
    assert every_channel(client, shop, profile.id) == {
        "email": None,
        "sms": "no_consent:sms",
        "whatsapp": None,
        "push": None,
    }


def test_explicit_opt_in_after_global_unsubscribe_restores_only_that_channel(client, shop):
    profile = make_profile(shop.id)
    client.post("/api/v1/unsubscribe", json={"identifier": "ann@shopper.test"}, headers=shop.auth)
    imported = {  # captured now, after the unsubscribe
        "identifier": "ann@shopper.test",
        "channel": "email",
        "status": "opted_in",
        "source": "import",
        "consent_text": TEXT,
        "captured_at": just_now(),
    }
    assert client.post("/api/v1/consents", json=imported, headers=shop.auth).get_json()["explicit"] is False
    assert check(client, shop, profile.id, "email").get_json()["reason"] == "global_unsubscribe"
    explicit = {**imported, "source": "popup", "ip": "203.0.113.9"}
    answer = client.post("/api/v1/consents", json=explicit, headers=shop.auth).get_json()
    assert answer["globally_unsubscribed"] is False
    assert every_channel(client, shop, profile.id) == {
        "email": None,
        "sms": "no_consent:sms",
        "whatsapp": "no_consent:whatsapp",
        "push": "no_consent:push",
    }


def test_consent_text_is_stored_once_with_hash_and_version(client, shop):
    make_profile(shop.id, consents=())
    for channel in ("email", "sms"):
        body = {
            "identifier": "ann@shopper.test",
            "channel": channel,
            "status": "opted_in",
            "source": "checkout",
            "consent_text": TEXT,
            "captured_at": AT,
        }
        assert client.post("/api/v1/consents", json=body, headers=shop.auth).status_code == 200
    from app.extensions import db

    texts = list(db.session.scalars(sa.select(ConsentText)))
    assert len(texts) == 1 and texts[0].version == 1 and len(texts[0].sha256) == 64
    assert db.session.scalar(sa.select(sa.func.count()).select_from(ConsentRecord)) == 2


def test_consent_for_a_new_identifier_creates_the_profile(client, shop):
    body = {
        "identifier": "email:new@shopper.test",
        "channel": "email",
        "status": "opted_in",
        "consent_text": TEXT,
        "source": "popup",
        "captured_at": AT,
    }
    answer = client.post("/api/v1/consents", json=body, headers=shop.auth).get_json()
    assert check(client, shop, answer["profile_id"], "email").get_json()["allowed"] is True


def bad(**fields) -> dict:
    """A consent body with one thing wrong (or missing, given as None)."""
    body = {"identifier": "ann@shopper.test", "channel": "sms", "status": "opted_out", "source": "api"}
    body["captured_at"] = AT
    return {k: v for k, v in {**body, **fields}.items() if v is not None}


BAD_CONSENTS = [
    (bad(channel="fax", status="opted_in", consent_text=TEXT), 422),
    (bad(status="maybe"), 422),
    (bad(status="opted_in"), 422),  # no consent text
    (bad(status="opted_in", consent_text="  "), 422),
    (bad(status="opted_in", consent_text=1e30), 422),
    (bad(captured_at="yesterday"), 422),
    (bad(captured_at="2026-01-01T10:00"), 422),
    # An opt-in's evidence: its moment (not the moment it reached us) and where it was given.
    (bad(status="opted_in", consent_text=TEXT, captured_at=None), 422),
    (bad(status="opted_in", consent_text=TEXT, source=None), 422),
    (bad(status="opted_in", consent_text=TEXT, source=" "), 422),
    (bad(status="opted_in", consent_text=TEXT, source=0), 422),
    (bad(identifier="not an email"), 422),
    (bad(identifier="fax:123"), 422),
    (bad(identifier=7), 400),
]


def test_bad_consent_bodies_are_refused_with_a_reason(client, shop):
    make_profile(shop.id)
    for body, status in BAD_CONSENTS:
        response = client.post("/api/v1/consents", json=body, headers=shop.auth)
        assert response.status_code == status, body
        assert response.get_json()["error"]["message"]
    bad_json = client.post(
        "/api/v1/consents", data="nope", headers={**shop.auth, "Content-Type": "application/json"}
    )
    assert bad_json.status_code == 400


@pytest.mark.parametrize("value", ["2026-11-30", "2026-13-45", "2026-11-30 10.00"])
def test_a_bare_date_is_no_phone_and_unsubscribes_or_opts_in_nobody(client, shop, value):
    """A CRM's date column mapped to the identifier made a profile holding the phone +4420261130."""
    for path, extra in (
        ("/api/v1/unsubscribe", {}),
        ("/api/v1/consents", {"channel": "sms", "status": "opted_out"}),
    ):
        body = {"identifier": value, "source": "crm", "captured_at": AT, **extra}
        response = client.post(path, json=body, headers=shop.auth)
        assert (
            response.status_code == 422
            and "is a date, not a phone" in response.get_json()["error"]["message"]
        )
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Profile)) == 0
    phone = client.post("/api/v1/unsubscribe", json={"identifier": "07700 900123"}, headers=shop.auth)
    assert phone.status_code == 200


def test_an_opt_out_missing_its_details_is_still_recorded_from_now(client, shop):
    """A CRM syncing opt-outs sends what it has: the customer's "no" is recorded, never refused."""
    profile = make_profile(shop.id)
    body = {"identifier": "ann@shopper.test", "channel": "email", "status": "opted_out", "consent_text": ""}
    answer = client.post("/api/v1/consents", json={**body, "source": " "}, headers=shop.auth)
    assert answer.status_code == 200 and answer.get_json()["states"]["email"] == "opted_out"
    record = db.session.get(ConsentRecord, answer.get_json()["id"])
    assert (record.source, record.consent_text_id) == ("api", None)
    assert check(client, shop, profile.id, "email").get_json()["reason"] == "no_consent:email"


def test_an_identifier_with_a_mistyped_kind_is_refused_and_creates_nobody(client, shop):
    for path in ("/api/v1/unsubscribe", "/api/v1/consents"):
        body = {"identifier": "emial:ann@shopper.test", "channel": "email", "status": "opted_out"}
        response = client.post(path, json={**body, "source": "api", "captured_at": AT}, headers=shop.auth)
        assert response.status_code == 422, path
        assert response.get_json()["error"]["message"] == "unknown identifier kind 'emial'"
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Profile)) == 0


def test_a_misspelt_field_of_a_send_or_a_check_is_refused_and_nothing_is_sent(client, shop):
    profile = make_profile(shop.id)
    send = {"profile_id": profile.id, "channel": "email", "source": "campaign", "campain_id": "spring"}
    refused = client.post("/api/v1/messages", json=send, headers=shop.auth)
    assert refused.status_code == 422
    assert refused.get_json()["error"]["message"].startswith("unknown field 'campain_id'")
    check = {"profile_id": profile.id, "channel": "email", "when": "2026-11-18T22:30:00+00:00"}
    assert client.post("/api/v1/gate/check", json=check, headers=shop.auth).status_code == 422
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Message)) == 0


def test_bad_gate_and_message_bodies_are_422(client, shop):
    profile = make_profile(shop.id)
    cases = [
        ("/api/v1/gate/check", {"profile_id": profile.id, "channel": "fax"}),
        ("/api/v1/gate/check", {"profile_id": "abc", "channel": "sms"}),
        ("/api/v1/gate/check", {"profile_id": profile.id, "channel": "sms", "at": "2026-11-18T12:00:00"}),
        ("/api/v1/messages", {"profile_id": profile.id, "channel": "sms", "source": "newsletter"}),
        ("/api/v1/messages", {"profile_id": profile.id, "channel": "sms"}),
        (
            "/api/v1/messages",
            {"profile_id": profile.id, "channel": "email", "source": "manual", "content": "hi"},
        ),
    ]
    for path, body in cases:
        response = client.post(path, json=body, headers=shop.auth)
        assert response.status_code == 422, (path, body)
        assert set(response.get_json()["error"]) == {"code", "message"}


@pytest.mark.parametrize(
    "at", ["9999-12-31T23:59:59+00:00", "0001-01-01T00:00:00-05:00", "1969-12-31T23:00:00Z"]
)
def test_a_gate_check_at_the_ends_of_the_calendar_is_a_422_not_a_500(client, shop, at):
    profile = make_profile(shop.id, consents=("email",))
    response = client.post(
        "/api/v1/gate/check", json={"profile_id": profile.id, "channel": "email", "at": at}, headers=shop.auth
    )
    assert response.status_code == 422
    assert response.get_json()["error"]["message"] == "at must be between 1970 and 2100"


def test_shop_a_token_cannot_gate_or_message_shop_b_profiles(client, shop, other_shop):
    theirs = make_profile(other_shop.id)
    assert check(client, shop, theirs.id, "email").status_code == 404
    message = {"profile_id": theirs.id, "channel": "email", "source": "campaign"}
    assert client.post("/api/v1/messages", json=message, headers=shop.auth).status_code == 404
    assert client.post("/api/v1/messages", json=message, headers=other_shop.auth).status_code == 200
    assert (
        client.post("/api/v1/gate/check", json={"profile_id": theirs.id, "channel": "email"}).status_code
        == 401
    )


def test_unsubscribe_through_shop_a_leaves_shop_b_alone(client, shop, other_shop):
    theirs = make_profile(other_shop.id)
    client.post("/api/v1/unsubscribe", json={"identifier": "ann@shopper.test"}, headers=shop.auth)
    assert check(client, other_shop, theirs.id, "email").get_json()["allowed"] is True


def test_post_messages_sends_and_logs(client, shop):
    profile = make_profile(shop.id)
    body = {"profile_id": profile.id, "channel": "email", "source": "campaign", "campaign_id": "black-friday"}
    answers = [client.post("/api/v1/messages", json=body, headers=shop.auth).get_json() for _ in range(4)]
    assert [a["status"] for a in answers] == ["sent", "sent", "sent", "blocked"]
    assert answers[3]["reason"] == "global_cap_reached:3/3"
    assert answers[3]["retry_at"] is not None
    assert answers[0]["id"] < answers[3]["id"]


def test_a_send_with_nowhere_to_go_is_answered_blocked_with_the_reason(client, shop):
    """The contract's answers are sent, blocked, waiting or missed: no address is a block."""
    # A zone where it is mid-day now, so the send clears quiet hours (POST /messages sends now).
    now = dt.datetime.now(dt.UTC)
    offset = (13 - now.hour) % 24  # hours east of UTC where it is 13:xx
    zone = f"Etc/GMT{-offset:+d}" if offset <= 14 else f"Etc/GMT{24 - offset:+d}"
    profile = make_profile(shop.id, phone=None, timezone=zone)
    body = {"profile_id": profile.id, "channel": "sms", "source": "manual"}
    answer = client.post("/api/v1/messages", json=body, headers=shop.auth).get_json()
    assert (answer["status"], answer["reason"], answer["retry_at"]) == ("blocked", "no_address:sms", None)
    assert db.session.get(Message, answer["id"]).status == "blocked"


def test_settings_reject_negative_caps_and_empty_quiet_windows(client, shop):
    for patch in ({"caps": {"sms": -1}}, {"quiet_hours": {"start": "21:00", "end": "21:00"}}):
        response = client.put("/api/v1/settings", json=patch, headers=shop.auth)
        assert response.status_code == 422
    assert (
        client.put("/api/v1/settings", json={"caps": {"global_daily": 1}}, headers=shop.auth).status_code
        == 200
    )
    profile = make_profile(shop.id)
    body = {"profile_id": profile.id, "channel": "email", "source": "manual"}
    statuses = [
        client.post("/api/v1/messages", json=body, headers=shop.auth).get_json()["reason"] for _ in range(2)
    ]
    assert statuses == [None, "global_cap_reached:1/1"]


def test_erased_profile_answers_erased_on_every_channel(client, shop):
    from app.extensions import db

    profile = make_profile(shop.id)
    profile.erased_at = NOON
    db.session.commit()
    assert every_channel(client, shop, profile.id) == dict.fromkeys(CHANNELS, "erased")


def test_a_merged_away_id_is_gated_as_its_survivor(client, shop):
    from app.extensions import db

    survivor = make_profile(shop.id)
    merged = make_profile(shop.id, "old@shopper.test", None, consents=())
    merged.merged_into_id = survivor.id
    db.session.commit()
    assert check(client, shop, merged.id, "sms").get_json()["allowed"] is True
    body = {"profile_id": merged.id, "channel": "email", "source": "manual"}
    answer = client.post("/api/v1/messages", json=body, headers=shop.auth).get_json()
    assert answer["profile_id"] == survivor.id and answer["status"] == "sent"


@pytest.mark.parametrize("call", ["consents", "unsubscribe"])
def test_a_consent_change_sent_by_the_merchants_tools_is_not_the_customers_activity(client, shop, call):
    # A CRM syncing opt-outs must not make a customer who left months ago look active again:
    # their last seen, stage and churn risk stay, and no stage change fires a journey.
    long_ago = NOON - dt.timedelta(days=200)
    profile = make_profile(shop.id, "gone@shopper.test", None, seen_at=long_ago, consents=())
    profile.lifecycle_stage, profile.churn_risk = "churned", 0.9
    db.session.commit()
    body = {"identifier": "email:gone@shopper.test"}
    if call == "consents":
        body.update(channel="email", status="opted_out", source="crm", captured_at=just_now())
    answer = client.post(f"/api/v1/{call}", json=body, headers=shop.auth)
    assert answer.status_code == 200 and answer.get_json()["profile_id"] == profile.id
    db.session.expire_all()
    again = db.session.get(Profile, profile.id)
    assert (again.last_seen_at, again.lifecycle_stage, again.churn_risk) == (long_ago, "churned", 0.9)
    identifier = db.session.scalar(sa.select(Identifier).where(Identifier.profile_id == profile.id))
    assert identifier.last_seen_at == long_ago
    assert not db.session.scalar(
        sa.select(sa.func.count()).select_from(Event).where(Event.type == "lifecycle.changed")
    )


def test_a_consent_dated_in_the_future_is_refused_and_cannot_outrank_a_later_unsubscribe(client, shop):
    """A record dated ahead of our clock would win over every later opt-out, for good: the API
    refuses one past the clock skew, and any record counts from now at the latest."""
    import datetime as dt

    from app.services.consent import record_consent

    profile = make_profile(shop.id)
    ahead = {
        "identifier": "ann@shopper.test",
        "channel": "email",
        "status": "opted_in",
        "consent_text": TEXT,
        "source": "popup",
        "captured_at": "2099-01-01T00:00:00+00:00",
    }
    refused = client.post("/api/v1/consents", json=ahead, headers=shop.auth)
    assert refused.status_code == 422 and "future" in refused.get_json()["error"]["message"]
    # A Shopify consent_updated_at a year ahead, or a clock a few minutes fast, counts from now.
    record_consent(
        profile, "email", "opted_in", source="shopify", captured_at=dt.datetime(2027, 6, 1, tzinfo=dt.UTC)
    )
    db.session.commit()
    gone = client.post("/api/v1/unsubscribe", json={"identifier": "ann@shopper.test"}, headers=shop.auth)
    assert gone.get_json()["globally_unsubscribed"] is True
    assert check(client, shop, profile.id, "email").get_json()["reason"] == "global_unsubscribe"


def test_an_import_named_in_any_case_or_by_its_tool_never_lifts_an_opt_out(client, shop):
    profile = make_profile(shop.id)
    client.post("/api/v1/unsubscribe", json={"identifier": "ann@shopper.test"}, headers=shop.auth)
    sources = ("Import", "klaviyo_import", "crm-sync", "KlaviyoImport", "ImportTool", "klaviyo_imports")
    sources += (
        "importer",
        "csv_upload",
        "resync",
        "synchronization",
        "klaviyo",
        "Mailchimp",
        "data_migration",
    )
    # A tool's API, CRM, webhook or export: what it holds, synced, not the customer's word now.
    sources += ("klaviyo_api", "Klaviyo API", "Omnisend API", "hubspot_crm", "zapier_webhook", "CRM export")
    sources += ("HubSpot API", "HubSpotAPI", "MailChimp API", "SendinBlue API", "SalesForceAPI")
    for source in sources:
        body = {
            "identifier": "ann@shopper.test",
            "channel": "email",
            "status": "opted_in",
            "source": source,
            "consent_text": TEXT,
            "captured_at": just_now(),
        }
        assert (
            client.post("/api/v1/consents", json=body, headers=shop.auth).get_json()["explicit"] is False
        ), source
    assert check(client, shop, profile.id, "email").get_json()["reason"] == "global_unsubscribe"


@pytest.mark.parametrize(
    "source",
    [
        "checkout",
        "popup",
        "footer_form",
        "customer_account",
        "sms_keyword",
        "klaviyo_form",
        "KlaviyoSignupForm",
    ]
    + [
        "privy_popup",
        "recharge_checkout",
        "segment",
        "important_updates_form",
        "async_form",
        "bulk_buy_landing",
    ],
)
def test_the_customers_own_sources_are_explicit(client, shop, source):
    make_profile(shop.id)
    body = {"identifier": "ann@shopper.test", "channel": "email", "status": "opted_in", "source": source}
    body.update(consent_text=TEXT, captured_at=just_now())
    answer = client.post("/api/v1/consents", json=body, headers=shop.auth)
    assert answer.get_json()["explicit"] is True


def test_an_identifier_whose_value_is_a_list_is_a_422_and_unsubscribes_nobody(client, shop):
    answer = client.post("/api/v1/unsubscribe", json={"identifier": {"email": ["a@b.co"]}}, headers=shop.auth)
    assert answer.status_code == 422 and "email must be text" in answer.get_json()["error"]["message"]


@pytest.mark.parametrize("ip", ["999.1.1.1", "localhost", "1.2.3", 42])
def test_a_consent_from_an_address_that_is_no_ip_is_refused(client, shop, ip):
    """Consent records are legal evidence: "999.1.1.1" was stored as the address it was given from."""
    make_profile(shop.id, consents=())
    body = {
        "identifier": "ann@shopper.test",
        "channel": "email",
        "status": "opted_in",
        "source": "popup",
        "consent_text": TEXT,
        "captured_at": AT,
        "ip": ip,
    }
    answer = client.post("/api/v1/consents", json=body, headers=shop.auth)
    assert (
        answer.status_code == 422
        and "is not an IPv4 or IPv6 address" in answer.get_json()["error"]["message"]
    )
    assert (
        client.post("/api/v1/consents", json={**body, "ip": "2001:db8::1"}, headers=shop.auth).status_code
        == 200
    )


def test_a_store_that_uninstalled_the_app_is_sent_nothing_until_it_is_installed_again(client, runner, shop):
    """After app/uninstalled, POST /messages still sent on the merchant's behalf."""
    from app.models import Shop

    profile = make_profile(shop.id)
    db.session.get(Shop, shop.id).uninstalled_at = NOON  # as app/uninstalled leaves it
    db.session.commit()
    assert check(client, shop, profile.id, "email").get_json() == {
        "allowed": False,
        "reason": "shop_uninstalled",
        "retry_at": None,
    }
    body = {"profile_id": profile.id, "channel": "email", "source": "manual"}
    sent = client.post("/api/v1/messages", json=body, headers=shop.auth).get_json()
    assert (sent["status"], sent["reason"]) == ("blocked", "shop_uninstalled")
    assert runner.invoke(args=["shop", "update", "--domain", shop.domain, "--reinstall"]).exit_code == 0
    assert check(client, shop, profile.id, "email").get_json()["allowed"] is True
