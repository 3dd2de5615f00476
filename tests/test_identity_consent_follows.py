"""Consent given or withdrawn for an email or phone follows that address when a late signal moves it.

A late webhook can show that an address belongs to another person than the one it was
first filed with. Its events and orders followed it, but its opt-outs stayed on the old
profile: the person who now held the address was emailed after it unsubscribed, and
texted after it sent STOP. Delivered in time order, the opt-out would have been theirs.
"""

from __future__ import annotations

import datetime as dt
from urllib.parse import urlencode

from app.extensions import db
from app.models import ConsentRecord
from tests.ingest_support import doc_of, fixture, ishop_fixture, post_shopify, sendgrid_post, twilio_post

ishop = ishop_fixture
EMAIL, PHONE = "jones.home@mail.uk", "+447700900102"


def customer(client, ishop, number: int, at: str, **contact) -> None:
    body = fixture("shopify/customers_create_2025_10.json")
    body.update({"id": number, "email": None, "phone": None, "created_at": at, "updated_at": at, **contact})
    body.update({"first_name": f"C{number}", "default_address": None})
    assert post_shopify(client, ishop, "customers/create", body, f"c-{number}").status_code == 200


def subscribed(client, ishop, number: int, at: str, channel: str) -> None:
    if channel == "email":
        topic, body = (
            "customers/email_marketing_consent_update",
            {"customer_id": number, "email_address": EMAIL},
        )
        body["email_marketing_consent"] = {"state": "subscribed", "consent_updated_at": at}
    else:
        topic, body = "customers/marketing_consent_update", {"id": number, "phone": PHONE}
        body["sms_marketing_consent"] = {"state": "subscribed", "consent_updated_at": at}
    assert post_shopify(client, ishop, topic, body, f"consent-{number}-{channel}").status_code == 200


def send(client, ishop, profile_id: int, channel: str) -> dict:
    body = {"profile_id": profile_id, "channel": channel, "source": "manual"}
    answer = client.post("/api/v1/messages", json=body, headers=ishop.auth)
    assert answer.status_code in (200, 201), answer.get_data(as_text=True)
    return answer.get_json()


def opted_out_holder(client, ishop, kind: str, value: str, channel: str) -> dict:
    """The holder of ``kind:value``, asserted opted out of ``channel`` and not messaged on it."""
    holder = doc_of(ishop, kind, value)
    assert holder["consents"][channel]["status"] == "opted_out"
    assert send(client, ishop, holder["id"], channel)["status"] == "blocked"
    return holder


def test_an_unsubscribe_follows_its_email_to_the_customer_a_late_webhook_shows_holds_it(client, ishop, drain):
    customer(client, ishop, 2802, "2026-11-26T11:00:00Z", email=EMAIL)
    drain()
    unsubscribed_at = int(dt.datetime(2026, 11, 27, 9, 0, tzinfo=dt.UTC).timestamp())
    event = {"email": EMAIL, "timestamp": unsubscribed_at, "event": "unsubscribe", "sg_event_id": "sg-u1"}
    assert sendgrid_post(client, ishop.domain, [event]).status_code == 200
    drain()
    customer(client, ishop, 2801, "2026-11-26T10:00:00Z", email=EMAIL)  # earlier, delivered late
    subscribed(client, ishop, 2801, "2026-11-26T10:01:00Z", "email")
    drain()
    holder = opted_out_holder(client, ishop, "email", EMAIL, "email")
    db.session.expire_all()
    records = db.session.query(ConsentRecord).filter(ConsentRecord.status == "opted_out").all()
    assert holder["id"] in [r.profile_id for r in records]  # copied: the profile it was sent to keeps it


def test_a_stop_follows_its_phone_to_the_customer_a_late_webhook_shows_holds_it(client, ishop, drain):
    customer(client, ishop, 1202, "2026-11-03T12:00:00Z", phone=PHONE)
    drain()
    stop = {"MessageSid": "SM" + "1" * 32, "From": PHONE, "To": "+447700900000", "Body": "STOP"}
    assert twilio_post(client, ishop.domain, urlencode(stop).encode()).status_code == 200
    drain()
    customer(client, ishop, 1201, "2026-11-03T10:00:00Z", phone=PHONE)  # earlier, delivered late
    subscribed(client, ishop, 1201, "2026-11-03T10:05:00Z", "sms")
    drain()
    opted_out_holder(client, ishop, "phone", PHONE, "sms")


def consent(client, ishop, body: dict) -> None:
    answer = client.post("/api/v1/consents", json=body, headers=ishop.auth)
    assert answer.status_code == 200, answer.get_data(as_text=True)


def test_an_unsubscribe_from_everything_stays_with_the_customer_whose_phone_a_late_webhook_moves(
    client, ishop, drain
):
    """A global unsubscribe is the person's word, whichever address the agent looked her up by."""
    customer(client, ishop, 1202, "2026-11-03T12:00:00Z", email="alice@qa.com", phone=PHONE)
    drain()
    body = {
        "identifier": "email:alice@qa.com",
        "channel": "email",
        "status": "opted_in",
        "consent_text": "News",
    }
    consent(client, ishop, {**body, "source": "checkout", "captured_at": "2026-11-03T12:01:00Z"})
    answer = client.post("/api/v1/unsubscribe", json={"identifier": f"phone:{PHONE}"}, headers=ishop.auth)
    assert answer.status_code == 200
    customer(client, ishop, 1201, "2026-11-03T10:00:00Z", email="carl@qa.com", phone=PHONE)  # late
    drain()
    alice = doc_of(ishop, "email", "alice@qa.com")
    assert alice["consents"]["email"]["status"] == "opted_out"
    assert send(client, ishop, alice["id"], "email")["status"] == "blocked"


def test_a_shopify_customers_sms_opt_in_stays_hers_when_a_late_guest_order_shares_her_phone(
    client, ishop, drain
):
    """Delivered in time order the guest's order comes first and the opt-in, keyed by her customer
    id, is hers; delivered late, it must not pass to the guest with the household phone."""
    customer(client, ishop, 1301, "2026-11-03T11:00:00Z", email="alice@qa.com", phone=PHONE)
    subscribed(client, ishop, 1301, "2026-11-03T11:05:00Z", "sms")
    drain()
    order = fixture("shopify/orders_create_guest.json")
    at = "2026-11-03T10:00:00Z"
    order.update({"id": 34001, "email": "bob@qa.com", "phone": PHONE, "created_at": at, "updated_at": at})
    assert post_shopify(client, ishop, "orders/create", order, "o-34001").status_code == 200
    drain()
    assert doc_of(ishop, "email", "alice@qa.com")["consents"]["sms"]["status"] == "opted_in"
    assert (doc_of(ishop, "email", "bob@qa.com")["consents"]["sms"] or {}).get("status") != "opted_in"


def test_a_stop_sent_for_a_customer_who_shares_a_phone_blocks_the_phones_holder_too(client, ishop, drain):
    """Two Shopify customers on one household phone stay two profiles (one holds the phone, a
    candidate waits). A Shopify SMS unsubscribe for the other named the phone but stayed on her
    profile: the phone's holder could still be texted at it."""
    customer(client, ishop, 9201, "2026-11-03T10:00:00Z", email="ann@qa.com", phone=PHONE)
    subscribed(client, ishop, 9201, "2026-11-03T10:05:00Z", "sms")
    customer(client, ishop, 9202, "2026-11-03T11:00:00Z", email="ben@qa.com", phone=PHONE)
    drain()
    holder = doc_of(ishop, "phone", PHONE)
    assert holder["id"] != doc_of(ishop, "email", "ben@qa.com")["id"]
    body = {"id": 9202, "phone": PHONE}
    body["sms_marketing_consent"] = {"state": "unsubscribed", "consent_updated_at": "2026-11-04T09:00:00Z"}
    answer = post_shopify(client, ishop, "customers/marketing_consent_update", body, "consent-9202-stop")
    assert answer.status_code == 200
    drain()
    opted_out_holder(client, ishop, "phone", PHONE, "sms")
    assert doc_of(ishop, "email", "ann@qa.com")["consents"]["email"]["status"] is None  # SMS only


def test_a_customer_never_subscribed_on_a_shared_phone_does_not_opt_its_holder_out(client, ishop, drain):
    """Shopify's "not subscribed" is no one's word: copied to the phone's holder, it turned her
    explicit SMS opt-in off."""
    customer(client, ishop, 9201, "2026-11-03T10:00:00Z", email="ann@qa.com", phone=PHONE)
    subscribed(client, ishop, 9201, "2026-11-03T10:05:00Z", "sms")
    customer(client, ishop, 9202, "2026-11-03T11:00:00Z", email="ben@qa.com", phone=PHONE)
    drain()
    body = {"id": 9202, "phone": PHONE}
    body["sms_marketing_consent"] = {"state": "not_subscribed", "consent_updated_at": "2026-11-04T09:00:00Z"}
    answer = post_shopify(client, ishop, "customers/marketing_consent_update", body, "consent-9202-none")
    assert answer.status_code == 200
    drain()
    assert doc_of(ishop, "phone", PHONE)["consents"]["sms"]["status"] == "opted_in"


def test_an_email_opt_out_naming_a_phone_is_copied_to_nobody(ishop):
    """Only a channel's own kind of address is blocked for its holder: in a batch beside an SMS
    opt-out of the same phone, an email opt-out whose identifier is that phone opted the phone
    holder's email out."""
    from app.models.base import utcnow
    from app.services.identifiers import Ident
    from app.services.opt_out_holders import share_with_holders
    from app.services.resolution import resolve

    at = utcnow()
    holder = resolve(ishop.model, [Ident("email", "b@x.uk"), Ident("phone", PHONE)], source="t", seen_at=at)
    other = resolve(ishop.model, [Ident("email", "a@x.uk")], source="t", seen_at=at)
    records = [
        ConsentRecord(
            shop_id=ishop.id,
            profile_id=other.id,
            channel=channel,
            status="opted_out",
            explicit=True,
            source="t",
            identifier=f"phone:{PHONE}",
            captured_at=at,
        )
        for channel in ("sms", "email")
    ]
    db.session.add_all(records)
    db.session.flush()
    assert share_with_holders(ishop.id, records) == {holder.id}
    copies = db.session.query(ConsentRecord).filter_by(profile_id=holder.id).all()
    assert [c.channel for c in copies] == ["sms"]
