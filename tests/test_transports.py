"""Provider adapters against a local fake HTTP server speaking each provider's send API."""

from __future__ import annotations

import base64
import datetime as dt
import json
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import sqlalchemy as sa

from app.models import Message
from app.services.messaging import send_message
from app.services.transports import Outbound, TransportError, provider_for
from app.services.transports.sendgrid import SendGridTransport
from app.services.transports.twilio import TwilioTransport
from app.services.transports.whatsapp import WhatsAppTransport
from tests.gate_helpers import NOON, make_profile


class FakeProvider(BaseHTTPRequestHandler):
    """Records each request and answers like SendGrid, Twilio or the WhatsApp Cloud API."""

    requests: list[dict] = []
    fail_with: int | None = None
    fail_body: dict | None = None  # the error body, else a generic one

    def do_POST(self):  # noqa: N802
        raw = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).requests.append({"path": self.path, "headers": dict(self.headers), "body": raw.decode()})
        if self.fail_with:
            self._answer(self.fail_with, self.fail_body or {"errors": [{"message": "nope"}]})
        elif self.path == "/v3/mail/send":
            self._answer(202, None, {"X-Message-Id": "sg-123"})
        elif self.path.endswith("/Messages.json"):
            self._answer(201, {"sid": "SM123", "status": "queued"})
        else:
            self._answer(200, {"messaging_product": "whatsapp", "messages": [{"id": "wamid.ABC"}]})

    def _answer(self, status, body, headers=None):
        data = json.dumps(body).encode() if body is not None else b""
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        return None


@pytest.fixture()
def provider():
    FakeProvider.requests, FakeProvider.fail_with, FakeProvider.fail_body = [], None, None
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeProvider)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def test_sendgrid_adapter_posts_v3_mail_send(provider):
    transport = SendGridTransport("SG.key", "shop@brand.test", provider)
    provider_id = transport.send(Outbound(7, "email", "ann@shopper.test", {"subject": "Hi", "text": "Hello"}))
    assert provider_id == "sg-123"
    sent = FakeProvider.requests[0]
    assert sent["headers"]["Authorization"] == "Bearer SG.key"
    body = json.loads(sent["body"])
    assert body["personalizations"] == [{"to": [{"email": "ann@shopper.test"}]}]
    assert body["from"] == {"email": "shop@brand.test"} and body["subject"] == "Hi"
    assert body["custom_args"] == {"c360_message_id": "7"}


def test_twilio_adapter_posts_form_encoded_messages_with_basic_auth(provider):
    transport = TwilioTransport("AC1", "tok", "+15005550006", provider)
    assert transport.send(Outbound(8, "sms", "+447911123456", {"text": "Your cart"})) == "SM123"
    sent = FakeProvider.requests[0]
    assert sent["path"] == "/2010-04-01/Accounts/AC1/Messages.json"
    assert sent["headers"]["Authorization"] == "Basic " + base64.b64encode(b"AC1:tok").decode()
    assert urllib.parse.parse_qs(sent["body"]) == {
        "To": ["+447911123456"],
        "From": ["+15005550006"],
        "Body": ["Your cart"],
    }


def test_whatsapp_adapter_posts_cloud_api_messages(provider):
    transport = WhatsAppTransport("EAAG", "1055", provider)
    assert (
        transport.send(Outbound(9, "whatsapp", "+447911123456", {"template": "cart", "language": "en_GB"}))
        == "wamid.ABC"
    )
    sent = FakeProvider.requests[0]
    assert sent["path"] == "/1055/messages" and sent["headers"]["Authorization"] == "Bearer EAAG"
    body = json.loads(sent["body"])
    assert body == {
        "messaging_product": "whatsapp",
        "to": "447911123456",
        "type": "template",
        "template": {"name": "cart", "language": {"code": "en_GB"}},
    }


@pytest.mark.parametrize(("status", "retryable"), [(500, True), (429, True), (400, False)])
def test_provider_errors_say_whether_to_retry(provider, status, retryable):
    FakeProvider.fail_with = status
    with pytest.raises(TransportError) as caught:
        SendGridTransport("k", "a@b.test", provider).send(Outbound(1, "email", "x@y.test"))
    assert (caught.value.status, caught.value.retryable) == (status, retryable)


def test_unreachable_provider_is_a_retryable_error():
    with pytest.raises(TransportError) as caught:
        TwilioTransport("AC1", "tok", "+1", "http://127.0.0.1:9").send(Outbound(1, "sms", "+1"))
    assert caught.value.retryable


def twilio_config(provider: str) -> dict[str, str]:
    """Twilio's settings, pointed at the fake provider."""
    return {
        "C360_TWILIO_ACCOUNT_SID": "AC1",
        "C360_TWILIO_API_TOKEN": "tok",
        "C360_TWILIO_FROM": "+15005550006",
        "C360_TWILIO_BASE_URL": provider,
    }


def twilio_in_config(app, provider: str, monkeypatch) -> dict[str, str]:
    """Twilio pointed at the fake provider, in the app's config (where delivery jobs read it)."""
    config = twilio_config(provider)
    for key, value in config.items():
        monkeypatch.setitem(app.config, key, value)
    return config


def test_no_provider_configured_means_the_outbox_alone():
    assert provider_for("email", {}) is None
    assert provider_for("push", {"C360_SENDGRID_API_KEY": "k", "C360_SENDGRID_FROM": "a@b.test"}) is None


def test_a_sent_message_is_delivered_after_commit_and_keeps_the_provider_id(
    app, db, shop, provider, drain, monkeypatch
):
    config = twilio_in_config(app, provider, monkeypatch)
    profile = make_profile(shop.id)
    message = send_message(shop.model, profile.id, "sms", "manual", now=NOON, config=config)
    drain()
    db.session.expire_all()
    assert (
        db.session.scalar(sa.select(Message.provider_message_id).where(Message.id == message.id)) == "SM123"
    )
    assert len(FakeProvider.requests) == 1


def test_a_message_the_provider_refuses_is_failed_and_frees_its_slot(app, db, shop, provider, monkeypatch):
    from app.services.messaging import deliver_message

    FakeProvider.fail_with = 400
    config = twilio_config(provider)
    profile = make_profile(shop.id)
    message = send_message(shop.model, profile.id, "sms", "manual", now=NOON)
    assert deliver_message(message.id, config) is None
    assert (message.status, message.reason) == ("failed", "provider_rejected:400")
    assert send_message(shop.model, profile.id, "sms", "manual", now=NOON).status == "sent"


@pytest.mark.parametrize(
    ("channel", "answer"),
    [
        ("sms", {"code": 21610, "message": "Attempt to send to unsubscribed recipient", "status": 400}),
        ("whatsapp", {"error": {"code": 131050, "message": "(#131050) Unable to deliver the message."}}),
    ],
)
def test_a_send_refused_because_the_recipient_opted_out_with_the_provider_opts_them_out(
    db, shop, provider, channel, answer
):
    from app.models import ConsentRecord
    from app.services.consent import channel_states, record_consent
    from app.services.messaging import deliver_message

    FakeProvider.fail_with, FakeProvider.fail_body = 400, answer
    config = {
        **twilio_config(provider),
        "C360_WHATSAPP_TOKEN": "t",
        "C360_WHATSAPP_PHONE_NUMBER_ID": "110",
        "C360_WHATSAPP_BASE_URL": provider,
    }
    profile = make_profile(shop.id)
    record_consent(profile, channel, "opted_in", source="checkout", captured_at=NOON - dt.timedelta(days=9))
    message = send_message(shop.model, profile.id, channel, "manual", now=NOON)
    assert deliver_message(message.id, config, now=NOON) is None
    assert (message.status, message.reason) == ("failed", "provider_opted_out")
    assert channel_states(profile)[channel] == "opted_out"
    record = db.session.scalar(sa.select(ConsentRecord).where(ConsentRecord.status == "opted_out"))
    assert (record.channel, record.source, record.captured_at) == (
        channel,
        f"{channel.replace('sms', 'twilio')}_opt_out",
        NOON,
    )
    again = send_message(shop.model, profile.id, channel, "manual", now=NOON + dt.timedelta(minutes=1))
    assert (again.status, again.reason) == ("blocked", f"no_consent:{channel}")


def test_a_bulk_send_hands_each_sent_message_to_the_provider(app, db, shop, provider, drain, monkeypatch):
    from app.services.messaging_bulk import send_many

    config = twilio_in_config(app, provider, monkeypatch)
    sent = [make_profile(shop.id, f"b{i}@shopper.test", f"+44791112345{i}").id for i in range(3)]
    silent = make_profile(shop.id, "quiet@shopper.test", "+447911123460", consents=("email",)).id
    result = send_many(
        shop.model, [*sent, silent], "sms", campaign_id="flash", now=NOON, chunk=2, config=config
    )
    drain()
    db.session.expire_all()
    assert (result.sent, result.blocked) == (3, 1)
    delivered = db.session.execute(
        sa.select(Message.profile_id, Message.provider_message_id).where(Message.campaign_id == "flash")
    ).all()
    assert sorted(delivered) == sorted([*((pid, "SM123") for pid in sent), (silent, None)])
    assert len(FakeProvider.requests) == 3


def test_a_hand_over_lost_in_a_crash_is_queued_again_by_the_sweeper(
    app, db, shop, provider, drain, monkeypatch
):
    from app import jobs
    from app.services.messaging import deliver_due

    config = twilio_in_config(app, provider, monkeypatch)
    profile = make_profile(shop.id)
    lost = []
    with pytest.MonkeyPatch.context() as crash:
        crash.setattr(jobs, "enqueue", lambda *args, **kwargs: lost.append(args))  # Redis dies here
        message = send_message(shop.model, profile.id, "sms", "manual", now=NOON, config=config)
    assert lost and message.provider_message_id is None
    assert deliver_due(NOON + dt.timedelta(seconds=30)) == 0  # its job may still be on its way
    assert deliver_due(NOON + dt.timedelta(minutes=5)) == 1
    drain()
    db.session.expire_all()
    assert db.session.get(Message, message.id).provider_message_id == "SM123"
    assert deliver_due(NOON + dt.timedelta(minutes=10)) == 0  # delivered: never twice
    assert len(FakeProvider.requests) == 1


def test_a_provider_configured_later_never_sends_the_old_outbox(app, db, shop, provider, drain, monkeypatch):
    from app.services.messaging import deliver_due

    profile = make_profile(shop.id)
    send_message(shop.model, profile.id, "sms", "manual", now=NOON)  # no provider: the outbox is delivery
    twilio_in_config(app, provider, monkeypatch)
    assert deliver_due(NOON + dt.timedelta(hours=1)) == 0
    drain()
    assert FakeProvider.requests == []


def test_a_send_the_provider_could_not_take_is_handed_over_by_the_sweeper(
    app, db, shop, provider, drain, monkeypatch
):
    from app.services.messaging import deliver_due

    config = twilio_in_config(app, provider, monkeypatch)
    profile = make_profile(shop.id)
    FakeProvider.fail_with = 503  # the provider is down when the job runs
    message = send_message(shop.model, profile.id, "sms", "manual", now=NOON, config=config)
    drain()
    db.session.expire_all()
    assert db.session.get(Message, message.id).provider_message_id is None
    FakeProvider.fail_with = None
    assert deliver_due(NOON + dt.timedelta(minutes=5)) == 1
    drain()
    db.session.expire_all()
    assert db.session.get(Message, message.id).provider_message_id == "SM123"
    assert deliver_due(NOON + dt.timedelta(days=2)) == 0


def test_a_send_no_provider_took_in_a_day_is_failed_and_stops_counting(app, db, shop, provider, monkeypatch):
    from app.services.messaging import deliver_due, messaging_section

    config = twilio_in_config(app, provider, monkeypatch)
    profile = make_profile(shop.id)
    FakeProvider.fail_with = 503  # down all day
    message = send_message(shop.model, profile.id, "sms", "manual", now=NOON, config=config)
    later = NOON + dt.timedelta(days=1, minutes=1)
    assert messaging_section(shop.model, profile, later)["messaging"]["last_7d_count"] == 1
    assert deliver_due(later) == 0
    db.session.expire_all()
    stale = db.session.get(Message, message.id)
    assert (stale.status, stale.reason, stale.provider_message_id) == ("failed", "provider_unreachable", None)
    assert messaging_section(shop.model, profile, later)["messaging"]["last_7d_count"] == 0


def _judged_then_held(db, shop, provider, source: str):
    """An SMS allowed at noon (London) and written to the outbox, not yet handed over; with the config."""
    config = twilio_config(provider)
    profile = make_profile(shop.id)
    kw = {"journey_id": "welcome"} if source == "journey" else {"campaign_id": "flash"}
    message = send_message(
        shop.model, profile.id, "sms", source, now=NOON, content={"text": "Welcome!"}, **kw
    )
    assert message.status == "sent"
    return message, profile, config


def test_a_customer_who_texted_stop_after_the_verdict_is_not_messaged(db, shop, provider):
    from app.services.consent import record_consent
    from app.services.messaging import deliver_message

    message, profile, config = _judged_then_held(db, shop, provider, "campaign")
    record_consent(profile, "sms", "opted_out", source="keyword", captured_at=NOON)
    db.session.commit()
    assert deliver_message(message.id, config) is None
    assert FakeProvider.requests == []
    assert (message.status, message.reason, message.sent_at) == ("blocked", "no_consent:sms", None)


@pytest.mark.parametrize(("source", "status"), [("campaign", "blocked"), ("journey", "waiting")])
def test_a_hand_over_made_late_into_quiet_hours_is_held_back_as_a_block_of_its_source(
    db, shop, provider, source, status
):
    from app.models import OutboxItem
    from app.services.messaging import deliver_message

    message, _profile, config = _judged_then_held(db, shop, provider, source)
    eleven_pm = NOON + dt.timedelta(hours=11)  # 23:00 in London: quiet hours
    item = db.session.get(OutboxItem, (shop.id, message.id))
    item.created_at = eleven_pm - dt.timedelta(hours=11)  # the provider was down since noon
    db.session.commit()
    assert deliver_message(message.id, config, now=eleven_pm) is None
    assert FakeProvider.requests == []
    assert (message.status, message.reason) == (status, "quiet_hours")
    if status == "waiting":  # the journey's retry comes when quiet hours end (09:00), saying the same
        assert message.retry_at == NOON + dt.timedelta(hours=21)
        assert message.content == {"text": "Welcome!"}


def _held_late_in_los_angeles(db, shop, provider, source: str, **kw):
    """An SMS allowed at noon in London, handed over 10 minutes late, when the customer is known
    to be in Los Angeles (04:10 there: quiet hours until 09:00, 17:00 in London, the same day)."""
    from app.models import OutboxItem
    from app.services.messaging import deliver_message

    config = twilio_config(provider)
    profile = make_profile(shop.id)
    message = send_message(shop.model, profile.id, "sms", source, now=NOON, content={"text": "Hi"}, **kw)
    assert message.status == "sent"
    profile.timezone = "America/Los_Angeles"
    later = NOON + dt.timedelta(minutes=10)
    db.session.get(OutboxItem, (shop.id, message.id)).created_at = NOON
    db.session.commit()
    assert deliver_message(message.id, config, now=later) is None
    return message


def test_a_send_held_back_at_hand_over_does_not_count_against_its_own_cap(db, shop, provider):
    """With one SMS a day, the held-back text counted as today's send: the journey lost a day."""
    message = _held_late_in_los_angeles(db, shop, provider, "journey", journey_id="welcome")
    assert (message.status, message.retry_at) == ("waiting", NOON + dt.timedelta(hours=5))


@pytest.mark.parametrize(("minutes", "status"), [(30, "missed"), (6 * 60, "waiting")])
def test_a_time_sensitive_send_held_back_at_hand_over_keeps_its_deadline(db, shop, provider, minutes, status):
    """It waited until quiet hours ended, hours past its deadline (a day was assumed)."""
    deadline = NOON + dt.timedelta(minutes=minutes)
    message = _held_late_in_los_angeles(db, shop, provider, "time_sensitive", deadline=deadline)
    assert message.status == status
    if status == "waiting":
        assert message.retry_at == NOON + dt.timedelta(hours=5)


def test_a_hand_over_on_time_keeps_its_verdict(db, shop, provider):
    from app.models import OutboxItem
    from app.services.messaging import deliver_message

    message, _profile, config = _judged_then_held(db, shop, provider, "campaign")
    eleven_pm = NOON + dt.timedelta(hours=11)
    item = db.session.get(OutboxItem, (shop.id, message.id))
    item.created_at = eleven_pm - dt.timedelta(minutes=1)
    db.session.commit()
    assert deliver_message(message.id, config, now=eleven_pm) == "SM123"


@pytest.mark.parametrize("retried_by", ["scheduled job", "sweeper"])
def test_a_journey_message_that_waited_for_quiet_hours_goes_to_the_provider_when_retried(
    app, db, shop, provider, drain, monkeypatch, retried_by
):
    from app.services import messaging
    from workers import ingest as ingest_jobs
    from workers import messaging as messaging_jobs

    config = twilio_in_config(app, provider, monkeypatch)
    profile = make_profile(shop.id)
    eleven_pm = NOON + dt.timedelta(hours=11)
    waiting = send_message(
        shop.model, profile.id, "sms", "journey", journey_id="welcome", now=eleven_pm, config=config
    )
    assert (waiting.status, waiting.reason) == ("waiting", "quiet_hours")
    morning = waiting.retry_at
    monkeypatch.setattr(messaging, "utcnow", lambda: morning)
    if retried_by == "scheduled job":
        messaging_jobs.retry_message(waiting.id)
    else:
        monkeypatch.setattr(ingest_jobs, "sweep_deliveries", lambda: 0)
        ingest_jobs.sweep_once()
    drain()
    db.session.expire_all()
    sent = db.session.execute(
        sa.select(Message.status, Message.provider_message_id).where(
            Message.journey_id == "welcome", Message.id != waiting.id
        )
    ).all()
    assert sent == [("sent", "SM123")]
    assert len(FakeProvider.requests) == 1


def test_an_sms_names_our_status_webhook_when_the_public_address_is_known(db, shop, provider):
    from app.services.messaging import deliver_message

    profile = make_profile(shop.id)
    message = send_message(shop.model, profile.id, "sms", "manual", now=NOON)
    config = {**twilio_config(provider), "C360_PUBLIC_URL": "https://c360.example.net/"}
    assert deliver_message(message.id, config) == "SM123"
    form = urllib.parse.parse_qs(FakeProvider.requests[0]["body"])
    assert form["StatusCallback"] == ["https://c360.example.net/webhooks/twilio/alpha.myshopify.com"]
    # Without it, no callback is named (statuses then come only if set in Twilio's console).
    other = send_message(
        shop.model, make_profile(shop.id, "b@shopper.test", "+447911123457").id, "sms", "manual", now=NOON
    )
    assert deliver_message(other.id, twilio_config(provider)) == "SM123"
    assert "StatusCallback" not in urllib.parse.parse_qs(FakeProvider.requests[1]["body"])
