"""Email, SMS and WhatsApp provider events become engagement and consent on the right profile."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from app.analytics.engagement import is_persons_doing
from app.extensions import db
from app.models import ConsentRecord, Event, WebhookDelivery
from app.services.consent import channel_states, record_consent
from app.services.identifiers import Ident
from app.services.ingest.keywords import keyword
from app.services.resolution import resolve
from tests.ingest_support import (
    fixture,
    fixture_bytes,
    ishop_fixture,
    post_shopify,
    profile_of,
    sendgrid_post,
    twilio_post,
    whatsapp_post,
)

ishop = ishop_fixture
PHONE = "+447911123456"  # a valid UK mobile (the fixtures' drama-range numbers do not validate)


def counters(shop, kind, value, channel):
    from app.services.profile_view import profile_document

    return profile_document(shop.model, profile_of(shop, kind, value))["engagement"]["by_channel"][channel]


def known_customer(client, shop, drain, phone=PHONE):
    order = fixture("shopify/orders_create_web.json")
    order["phone"] = order["customer"]["phone"] = phone
    assert post_shopify(client, shop, "orders/create", order, "wh-order").status_code == 200
    drain()
    return profile_of(shop, "phone", phone)


def sms_form(body: str, sid: str, phone=PHONE) -> bytes:
    from urllib.parse import urlencode

    return urlencode(
        {
            "MessageSid": sid,
            "AccountSid": "AC1",
            "From": phone,
            "To": "+447700900000",
            "Body": body,
            "NumMedia": "0",
        }
    ).encode()


def test_keywords_are_whole_messages_in_any_case():
    assert keyword(" Stop ") == "STOP" and keyword("stopall") == "STOPALL" and keyword("unstop") == "UNSTOP"
    assert keyword("") is None and keyword(None) is None


@pytest.mark.parametrize(
    ("body", "word"),
    [
        ("STOP.", "STOP"),
        ("Stop!", "STOP"),
        ("STOP ALL", "STOPALL"),
        ("opt out", "OPTOUT"),
        ("Opt-Out", "OPTOUT"),
        ("Unsubscribe.", "UNSUBSCRIBE"),
        ("\u200bSTOP", "STOP"),
        ("STOP\u200b", "STOP"),
        ("\uff33\uff34\uff2f\uff30", "STOP"),  # full-width letters, as some keyboards type them
        ("Stop please", "STOP"),
        ("please stop!!", "STOP"),
        ("Stop texting me", "STOP"),
        ("Start.", "START"),
        ("STOP STOP", "STOP"),
        ("Stop it", "STOP"),
        ("Stop sending me messages", "STOP"),
        ("Stop the messages", "STOP"),
        ("Stop.\nSent from my iPhone", "STOP"),
    ],
)
def test_an_opt_out_written_with_punctuation_or_courtesy_is_still_an_opt_out(body, word):
    """A customer's "Stop!" or "STOP ALL" left them opted in, and texted again."""
    assert keyword(body) == word


@pytest.mark.parametrize(
    "body",
    ["Cancel my order 1001", "End of the day works", "Is it in stock? stop", "please start", "start please"]
    + ["Cancel #1001", "cancel 1001", "Stop 2 of 3", "STOP START"],
)
def test_a_message_that_only_contains_a_keyword_is_a_reply(body):
    """A customer-service reply is not an opt-out; and only a plain START opts back in."""
    assert keyword(body) is None


def test_inbound_stop_revokes_sms_consent_and_start_restores_it(client, ishop, drain):
    profile = known_customer(client, ishop, drain)
    record_consent(profile, "sms", "opted_in", source="checkout", captured_at=profile.first_seen_at)
    db.session.commit()
    stop = fixture_bytes("twilio/inbound_stop.form").replace(b"%2B447700900123", b"%2B447911123456")
    assert twilio_post(client, ishop.domain, stop).status_code == 200
    drain()
    assert channel_states(profile_of(ishop, "phone", PHONE))["sms"] == "opted_out"
    for word in ("  start ", "UNSTOP"):
        assert twilio_post(client, ishop.domain, sms_form(word, f"SM-{word.strip()}")).status_code == 200
        drain()
        assert channel_states(profile_of(ishop, "phone", PHONE))["sms"] == "opted_in"
    assert twilio_post(client, ishop.domain, sms_form("QUIT", "SM-quit")).status_code == 200
    drain()
    assert channel_states(profile_of(ishop, "phone", PHONE))["sms"] == "opted_out"
    record = db.session.scalar(sa.select(ConsentRecord).order_by(ConsentRecord.id.desc()))
    assert (record.source, record.explicit) == ("keyword", True)


def _both_opted_in(client, ishop, drain):
    profile = known_customer(client, ishop, drain)
    for channel in ("sms", "whatsapp"):
        record_consent(profile, channel, "opted_in", source="checkout", captured_at=profile.first_seen_at)
    db.session.commit()


def test_an_opt_out_twilio_recognised_is_honoured_whatever_its_words(client, ishop, drain):
    """Twilio's Advanced Opt-Out names a merchant's own keywords (``ARRET``) in ``OptOutType``."""
    _both_opted_in(client, ishop, drain)
    form = sms_form("ARRET", "SM-fr").decode() + "&OptOutType=STOP"
    assert twilio_post(client, ishop.domain, form.encode()).status_code == 200
    drain()
    assert channel_states(profile_of(ishop, "phone", PHONE))["sms"] == "opted_out"
    form = sms_form("Reprendre", "SM-fr2").decode() + "&OptOutType=START"
    assert twilio_post(client, ishop.domain, form.encode()).status_code == 200
    drain()
    assert channel_states(profile_of(ishop, "phone", PHONE))["sms"] == "opted_in"


def test_a_stop_sent_over_whatsapp_through_twilio_revokes_whatsapp_not_sms(client, ishop, drain):
    _both_opted_in(client, ishop, drain)
    stop = sms_form("STOP", "SM-wa", phone=f"whatsapp:{PHONE}")
    assert twilio_post(client, ishop.domain, stop).status_code == 200
    drain()
    states = channel_states(profile_of(ishop, "phone", PHONE))
    assert (states["whatsapp"], states["sms"]) == ("opted_out", "opted_in")
    reply = sms_form("Thanks!", "SM-wa2", phone=f"whatsapp:{PHONE}")
    assert twilio_post(client, ishop.domain, reply).status_code == 200
    drain()
    assert counters(ishop, "phone", PHONE, "whatsapp")["replied"] == 1
    assert counters(ishop, "phone", PHONE, "sms")["replied"] == 0


def test_replayed_stop_adds_no_second_record(client, ishop, drain):
    known_customer(client, ishop, drain)
    for _ in range(3):
        assert twilio_post(client, ishop.domain, sms_form("STOP", "SM-same")).status_code == 200
    drain()
    assert db.session.scalar(sa.select(sa.func.count()).select_from(ConsentRecord)) == 1


def test_other_inbound_text_is_a_reply_and_status_callbacks_count(client, ishop, drain):
    known_customer(client, ishop, drain)
    twilio_post(client, ishop.domain, sms_form("Is the shirt in stock?", "SM-q"))
    status = fixture_bytes("twilio/status_delivered.form").replace(b"%2B447700900123", b"%2B447911123456")
    for _ in range(2):
        assert twilio_post(client, ishop.domain, status).status_code == 200
    drain()
    sms = counters(ishop, "phone", PHONE, "sms")
    assert (sms["replied"], sms["delivered"]) == (1, 1)
    assert channel_states(profile_of(ishop, "phone", PHONE))["sms"] is None


def test_sendgrid_batch_counts_engagement_and_revokes_on_spam_and_unsubscribe(client, ishop, drain):
    known_customer(client, ishop, drain)
    events = fixture("sendgrid/events.json")
    events[4]["email"] = "sarah.j.home@gmail.com"  # the fixture's ana@example.com is on the blocklist
    events[3]["email"] = "dave@example.net"
    record_consent(
        profile_of(ishop, "phone", PHONE),
        "email",
        "opted_in",
        source="checkout",
        captured_at=profile_of(ishop, "phone", PHONE).first_seen_at,
    )
    db.session.commit()
    response = sendgrid_post(client, ishop.domain, events)
    assert response.status_code == 200 and response.get_json()["accepted"] == 5
    assert sendgrid_post(client, ishop.domain, events).get_json()["duplicates"] == 5
    drain()
    email = counters(ishop, "email", "sarah.j.home@gmail.com", "email")
    assert (email["delivered"], email["opened"], email["clicked"]) == (1, 1, 1)
    assert channel_states(profile_of(ishop, "email", "sarah.j.home@gmail.com"))["email"] == "opted_out"
    assert channel_states(profile_of(ishop, "email", "dave@example.net"))["email"] == "opted_out"
    assert (
        db.session.scalar(sa.select(sa.func.count()).select_from(Event).where(Event.source == "sendgrid"))
        == 5
    )
    assert profile_of(ishop, "email", "sarah.j.home@gmail.com").last_engaged_at is not None


def test_whatsapp_inbound_is_a_reply_from_the_wa_id_phone(client, ishop, drain):
    profile = known_customer(client, ishop, drain)
    body = fixture("whatsapp/inbound_text.json")
    body["entry"][0]["changes"][0]["value"]["messages"][0]["from"] = PHONE.lstrip("+")
    for _ in range(2):
        assert whatsapp_post(client, ishop.domain, body).status_code == 200
    drain()
    assert profile_of(ishop, "phone", PHONE).id == profile.id
    assert counters(ishop, "phone", PHONE, "whatsapp")["replied"] == 1


def test_whatsapp_inbound_from_a_new_number_creates_a_reachable_profile(client, ishop, drain):
    body = fixture("whatsapp/inbound_text.json")
    body["entry"][0]["changes"][0]["value"]["messages"][0]["from"] = "14155550100"
    assert whatsapp_post(client, ishop.domain, body).status_code == 200
    drain()
    assert counters(ishop, "phone", "+14155550100", "whatsapp")["replied"] == 1


def test_whatsapp_read_status_counts_as_opened(client, ishop, drain):
    known_customer(client, ishop, drain)
    body = fixture("whatsapp/status_read.json")
    body["entry"][0]["changes"][0]["value"]["statuses"][0]["recipient_id"] = PHONE.lstrip("+")
    assert whatsapp_post(client, ishop.domain, body).status_code == 200
    drain()
    assert counters(ishop, "phone", PHONE, "whatsapp")["opened"] == 1
    row = db.session.scalar(sa.select(WebhookDelivery).where(WebhookDelivery.provider == "whatsapp"))
    assert (row.topic, row.external_id, row.status) == ("status", "wamid.HBgM2:read", "processed")


def sg_event(email: str, kind: str, timestamp: int, sg_event_id: str) -> dict:
    return {"email": email, "event": kind, "timestamp": timestamp, "sg_event_id": sg_event_id}


def test_a_message_delivered_or_bounced_is_not_the_customer_being_seen(client, ishop, drain):
    # A newsletter delivered to someone who left long ago must not make them look active: their
    # last seen feeds the stage of non-buyers and every customer's churn-risk recency.
    long_ago = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
    shop = ishop.model
    resolve(
        shop, [Ident("email", "quiet@shopper.test"), Ident("phone", PHONE)], source="test", seen_at=long_ago
    )
    db.session.commit()
    outcomes = [
        sg_event("quiet@shopper.test", kind, 1791100000 + n, f"sg-q{n}")
        for n, kind in enumerate(["processed", "delivered", "deferred", "bounce", "dropped"])
    ]
    assert sendgrid_post(client, ishop.domain, outcomes).status_code == 200
    status = fixture_bytes("twilio/status_delivered.form").replace(b"%2B447700900123", b"%2B447911123456")
    assert twilio_post(client, ishop.domain, status).status_code == 200
    sent = status.replace(b"MessageStatus=delivered", b"MessageStatus=sent").replace(b"0002&", b"0003&")
    assert twilio_post(client, ishop.domain, sent).status_code == 200
    wa = fixture("whatsapp/status_read.json")
    wa["entry"][0]["changes"][0]["value"]["statuses"][0].update(status="delivered", recipient_id=PHONE[1:])
    assert whatsapp_post(client, ishop.domain, wa).status_code == 200
    drain()
    profile = profile_of(ishop, "email", "quiet@shopper.test")
    assert counters(ishop, "email", "quiet@shopper.test", "email")["delivered"] == 1  # still counted
    assert (profile.first_seen_at, profile.last_seen_at) == (long_ago, long_ago)
    opened = sg_event("quiet@shopper.test", "open", 1791200000, "sg-q-open")
    assert sendgrid_post(client, ishop.domain, [opened]).status_code == 200
    drain()
    assert profile_of(ishop, "email", "quiet@shopper.test").last_seen_at == dt.datetime.fromtimestamp(
        1791200000, dt.UTC
    )


def test_a_delivery_to_an_address_nobody_holds_makes_a_profile_never_seen(client, ishop, drain):
    delivered = sg_event("new@shopper.test", "delivered", 1791100000, "sg-n")
    assert sendgrid_post(client, ishop.domain, [delivered]).status_code == 200
    drain()
    profile = profile_of(ishop, "email", "new@shopper.test")
    assert profile is not None and (profile.first_seen_at, profile.last_seen_at) == (None, None)


@pytest.mark.parametrize(
    ("event_type", "persons"),
    [
        ("email.delivered", False),
        ("email.processed", False),
        ("email.bounced", False),
        ("sms.sent", False),
        ("whatsapp.failed", False),
        ("lifecycle.changed", False),
        ("profile.merged", False),
        ("email.opened", True),
        ("email.machine_opened", False),
        ("sms.replied", True),
        ("email.unsubscribe", True),
        ("push.dismissed", True),
        ("support.ticket_opened", True),
        ("order.placed", True),
        ("order.refunded", False),
        ("order.cancelled", False),
        ("customer.updated", False),
    ],
)
def test_only_what_the_person_did_is_a_sighting_of_them(event_type, persons):
    assert is_persons_doing(event_type) is persons


def _whatsapp_text(body: str, message_id: str, timestamp: int) -> dict:
    inbound = fixture("whatsapp/inbound_text.json")
    message = inbound["entry"][0]["changes"][0]["value"]["messages"][0]
    message.update({"from": PHONE[1:], "id": message_id, "text": {"body": body}, "timestamp": str(timestamp)})
    return inbound


def test_whatsapp_stop_revokes_whatsapp_consent_and_start_restores_it(client, ishop, drain):
    profile = known_customer(client, ishop, drain)
    record_consent(profile, "whatsapp", "opted_in", source="checkout", captured_at=profile.first_seen_at)
    db.session.commit()
    assert (
        whatsapp_post(client, ishop.domain, _whatsapp_text(" stop ", "wamid.S1", 1792000000)).status_code
        == 200
    )
    drain()
    assert channel_states(profile_of(ishop, "phone", PHONE))["whatsapp"] == "opted_out"
    assert (
        whatsapp_post(client, ishop.domain, _whatsapp_text("START", "wamid.S2", 1792000100)).status_code
        == 200
    )
    drain()
    assert channel_states(profile_of(ishop, "phone", PHONE))["whatsapp"] == "opted_in"
    # Other text is a reply, and SMS consent is the SMS keywords' business.
    assert (
        whatsapp_post(
            client, ishop.domain, _whatsapp_text("stop sending socks?", "wamid.S3", 1792000200)
        ).status_code
        == 200
    )
    drain()
    states = channel_states(profile_of(ishop, "phone", PHONE))
    assert (states["whatsapp"], states["sms"]) == ("opted_in", None)
    assert counters(ishop, "phone", PHONE, "whatsapp")["replied"] == 1


NOON_TODAY = dt.datetime.now(dt.UTC).replace(hour=12, minute=0, second=0, microsecond=0)


def _sent(shop, profile, channel: str, provider_id: str):
    """A message we sent to ``profile`` at noon today, handed to its provider under ``provider_id``."""
    from app.services.messaging import send_message

    record_consent(profile, channel, "opted_in", source="checkout", captured_at=profile.first_seen_at)
    message = send_message(shop.model, profile.id, channel, "manual", now=NOON_TODAY)
    message.provider_message_id = provider_id
    db.session.commit()
    assert message.status == "sent"
    return message


def test_a_message_the_provider_could_not_deliver_is_failed_in_the_log_and_stops_counting(
    client, ishop, drain
):
    from app.models import Message
    from app.services.messaging import messaging_section

    profile = known_customer(client, ishop, drain)
    mail = _sent(ishop, profile, "email", "sg-m-9")
    text = _sent(ishop, profile, "sms", "SM-undelivered")
    chat = _sent(ishop, profile, "whatsapp", "wamid.F1")
    assert messaging_section(ishop.model, profile, NOON_TODAY)["messaging"]["today_count"] == 3
    bounce = sg_event("sarah.j.home@gmail.com", "bounce", int(dt.datetime.now(dt.UTC).timestamp()), "sg-b1")
    bounce["c360_message_id"] = f"m-{mail.id}"
    assert sendgrid_post(client, ishop.domain, [bounce]).status_code == 200
    form = (
        sms_form("", "SM-undelivered")
        .replace(b"Body=&", b"")
        .replace(b"NumMedia=0", b"MessageStatus=undelivered")
    )
    assert twilio_post(client, ishop.domain, form).status_code == 200
    wa = fixture("whatsapp/status_read.json")
    wa["entry"][0]["changes"][0]["value"]["statuses"][0].update(
        id="wamid.F1",
        status="failed",
        recipient_id=PHONE[1:],
        timestamp=str(int(dt.datetime.now(dt.UTC).timestamp())),
    )
    assert whatsapp_post(client, ishop.domain, wa).status_code == 200
    drain()
    db.session.expire_all()
    failed = {m.id: (m.status, m.reason) for m in db.session.scalars(sa.select(Message))}
    assert failed == {
        mail.id: ("failed", "provider_bounce"),
        text.id: ("failed", "provider_undelivered"),
        chat.id: ("failed", "provider_failed"),
    }
    again = profile_of(ishop, "phone", PHONE)
    assert messaging_section(ishop.model, again, NOON_TODAY)["messaging"]["today_count"] == 0


def test_a_recipient_who_opted_out_with_the_provider_is_opted_out_of_that_channel_only(client, ishop, drain):
    """Twilio's 21610, WhatsApp's 131050 and SendGrid's unsubscribe-list drop each say the customer
    told the provider to stop: that channel's consent turns off (with the provider as its source),
    the message fails, the other channels keep their consent, and a replay adds no second record."""
    from app.models import Message

    profile = known_customer(client, ishop, drain)
    mail = _sent(ishop, profile, "email", "sg-m-7")
    text = _sent(ishop, profile, "sms", "SM-stopped")
    chat = _sent(ishop, profile, "whatsapp", "wamid.S1")
    now = int(dt.datetime.now(dt.UTC).timestamp())
    drop = sg_event("sarah.j.home@gmail.com", "dropped", now, "sg-d1")
    drop.update(reason="Unsubscribed Address", c360_message_id=f"m-{mail.id}")
    bounced_drop = sg_event("sarah.j.home@gmail.com", "dropped", now, "sg-d2")
    bounced_drop["reason"] = "Bounced Address"  # undeliverable, not an opt-out
    form = sms_form("", "SM-stopped").replace(b"Body=&", b"")
    form = form.replace(b"NumMedia=0", b"MessageStatus=failed&ErrorCode=21610")
    wa = fixture("whatsapp/status_read.json")
    wa["entry"][0]["changes"][0]["value"]["statuses"][0].update(
        id="wamid.S1",
        status="failed",
        recipient_id=PHONE[1:],
        timestamp=str(now),
        errors=[{"code": 131050, "title": "User's marketing opt-out"}],
    )
    for _ in range(2):
        assert sendgrid_post(client, ishop.domain, [bounced_drop, drop]).status_code == 200
        assert twilio_post(client, ishop.domain, form).status_code == 200
        assert whatsapp_post(client, ishop.domain, wa).status_code == 200
    drain()
    db.session.expire_all()
    states = channel_states(profile_of(ishop, "phone", PHONE))
    assert (states["email"], states["sms"], states["whatsapp"]) == ("opted_out", "opted_out", "opted_out")
    sources = sorted(
        (r.channel, r.source, r.status)
        for r in db.session.scalars(sa.select(ConsentRecord).where(ConsentRecord.source.like("%_opt_out")))
    )
    assert sources == [
        ("email", "sendgrid_opt_out", "opted_out"),
        ("sms", "twilio_opt_out", "opted_out"),
        ("whatsapp", "whatsapp_opt_out", "opted_out"),
    ]
    assert {m.id: m.status for m in db.session.scalars(sa.select(Message))} == {
        mail.id: "failed",
        text.id: "failed",
        chat.id: "failed",
    }


def test_a_failure_that_is_not_an_opt_out_keeps_consent(client, ishop, drain):
    profile = known_customer(client, ishop, drain)
    _sent(ishop, profile, "sms", "SM-unreachable")
    _sent(ishop, profile, "whatsapp", "wamid.U1")
    form = sms_form("", "SM-unreachable").replace(b"Body=&", b"")
    form = form.replace(b"NumMedia=0", b"MessageStatus=undelivered&ErrorCode=30003")  # handset unreachable
    wa = fixture("whatsapp/status_read.json")
    wa["entry"][0]["changes"][0]["value"]["statuses"][0].update(
        id="wamid.U1",
        status="failed",
        recipient_id=PHONE[1:],
        timestamp=str(int(dt.datetime.now(dt.UTC).timestamp())),
        errors=[{"code": 131026, "title": "Message undeliverable"}],
    )
    assert twilio_post(client, ishop.domain, form).status_code == 200
    assert whatsapp_post(client, ishop.domain, wa).status_code == 200
    drain()
    states = channel_states(profile_of(ishop, "phone", PHONE))
    assert (states["sms"], states["whatsapp"]) == ("opted_in", "opted_in")


def test_a_mail_privacy_machine_open_is_not_the_customer_opening(client, ishop, drain):
    """Apple Mail opens every message to prefetch it (``sg_machine_open``): counted, every such
    customer looked engaged and freshly seen."""
    profile = known_customer(client, ishop, drain)
    address = fixture("shopify/orders_create_web.json")["email"].strip().lower()
    seen_before = profile.last_seen_at
    event = {"email": address, "timestamp": 1791100300, "event": "open", "sg_event_id": "sg-mo-1"}
    machine = {**event, "sg_machine_open": True}
    assert sendgrid_post(client, ishop.domain, [machine]).status_code == 200
    drain()
    assert counters(ishop, "email", address, "email")["opened"] == 0
    after = profile_of(ishop, "email", address)
    assert (after.last_engaged_at, after.last_seen_at) == (None, seen_before)
    stored = db.session.scalar(sa.select(Event).where(Event.external_id == "sg-mo-1"))
    assert stored.type == "email.machine_opened"  # on the timeline, for what it is
    human = {**event, "sg_event_id": "sg-mo-2", "sg_machine_open": False}
    assert sendgrid_post(client, ishop.domain, [human]).status_code == 200
    drain()
    assert counters(ishop, "email", address, "email")["opened"] == 1


def test_tapping_a_marketing_messages_stop_promotions_button_opts_out_of_whatsapp(client, ishop, drain):
    """Meta's marketing templates carry a "Stop promotions" quick reply; tapping it arrives as a
    ``button`` message, which counted as a reply and left the customer opted in."""
    profile = known_customer(client, ishop, drain)
    record_consent(profile, "whatsapp", "opted_in", source="checkout", captured_at=profile.first_seen_at)
    db.session.commit()
    inbound = _whatsapp_text("x", "wamid.B1", 1792000000)
    message = inbound["entry"][0]["changes"][0]["value"]["messages"][0]
    message.pop("text")
    message.update(type="button", button={"text": "Stop promotions", "payload": "Stop promotions"})
    assert whatsapp_post(client, ishop.domain, inbound).status_code == 200
    drain()
    assert channel_states(profile_of(ishop, "phone", PHONE))["whatsapp"] == "opted_out"


@pytest.mark.parametrize(
    ("wa_id", "phone"),
    [
        ("5215512345678", "+525512345678"),  # Mexico: WhatsApp keeps the mobile "1" numbering dropped
        ("551176543218", "+5511976543218"),  # Brazil: an account older than the ninth digit
    ],
)
def test_a_whatsapp_stop_from_an_id_in_whatsapps_own_numbering_reaches_the_phones_holder(
    client, ishop, drain, wa_id, phone
):
    """The STOP was stored against a raw phone nobody holds, and the customer stayed opted in."""
    profile = known_customer(client, ishop, drain, phone=phone)
    record_consent(profile, "whatsapp", "opted_in", source="checkout", captured_at=profile.first_seen_at)
    db.session.commit()
    body = _whatsapp_text("STOP", "wamid.MX1", 1792000000)
    body["entry"][0]["changes"][0]["value"]["messages"][0]["from"] = wa_id
    assert whatsapp_post(client, ishop.domain, body).status_code == 200
    drain()
    assert channel_states(profile_of(ishop, "phone", phone))["whatsapp"] == "opted_out"


@pytest.mark.parametrize(
    ("wa_id", "phone"),
    [
        ("551123456789", "+551123456789"),  # a Brazilian landline has eight digits still
        ("5511976543218", "+5511976543218"),  # a Brazilian mobile with its ninth digit already
        ("525512345678", "+525512345678"),  # a Mexican number as Mexico writes it now
        ("14155550100", "+14155550100"),
        ("+447700900123", "+447700900123"),  # a provider that copied the plus
        ("+52 1 55 1234 5678", "+525512345678"),  # spaced as a person writes it: renumbered the same
    ],
)
def test_whatsapp_ids_in_todays_numbering_are_left_as_they_are(wa_id, phone):
    from app.services.ingest.whatsapp_numbers import wa_phone

    assert wa_phone(wa_id) == phone


def test_a_whatsapp_stop_from_an_old_brazilian_number_the_shop_holds_as_sent_reaches_its_holder(
    client, ishop, drain
):
    """An order placed before the ninth digit holds the number as WhatsApp still sends it."""
    profile = known_customer(client, ishop, drain, phone="+551176543218")
    record_consent(profile, "whatsapp", "opted_in", source="checkout", captured_at=profile.first_seen_at)
    db.session.commit()
    body = _whatsapp_text("STOP", "wamid.BR1", 1792000000)
    body["entry"][0]["changes"][0]["value"]["messages"][0]["from"] = "551176543218"
    assert whatsapp_post(client, ishop.domain, body).status_code == 200
    drain()
    assert channel_states(profile_of(ishop, "phone", "+551176543218"))["whatsapp"] == "opted_out"
