"""Twilio SMS: delivery status callbacks and inbound messages (with the STOP/START keywords).

Twilio also carries WhatsApp: its addresses are then written ``whatsapp:+<number>``, and the
message, its status and its keywords are WhatsApp's, not the number's SMS. When Twilio's
Advanced Opt-Out recognised a keyword (a merchant's own, ``ARRET``), it says so in
``OptOutType`` and that is honoured whatever the words.
"""

from __future__ import annotations

import re

from app.analytics.engagement import is_persons_doing
from app.models import Shop, WebhookDelivery
from app.services.ingest.common import BadPayload, engage, idents, message_profile, report_status
from app.services.ingest.keywords import apply_keyword, keyword
from app.services.ingest.whatsapp_numbers import wa_phone
from app.services.provider_opt_outs import is_twilio_opt_out, record_opt_out
from app.services.resolution import resolve

SOURCE = "twilio"
# Twilio MessageStatus -> engagement metric; "sent" is counted by the sender itself.
METRICS = {"delivered": "delivered", "undelivered": "bounced", "failed": "bounced", "read": "opened"}
STATUS = re.compile(r"^[a-z_-]{1,40}$")  # queued, sent, delivered, undelivered, failed, read…


def parse_form(form: dict[str, str]) -> tuple[str, str]:
    """``(topic, external id)`` of a Twilio form post.

    Raises:
        BadPayload: neither a status callback nor an inbound message.
    """
    sid = form.get("MessageSid") or form.get("SmsSid")
    if not sid:
        raise BadPayload("MessageSid is required")
    if len(sid) > 64:  # Twilio's are 34 characters
        raise BadPayload("MessageSid is longer than 64 characters")
    status = form.get("MessageStatus")
    if status and not STATUS.match(status):
        raise BadPayload(f"MessageStatus {status[:40]!r} is not a status")
    if status and status != "received":
        if not form.get("To"):
            raise BadPayload("a status callback needs To")
        return "status", f"{sid}:{status}"
    if not form.get("From") or "Body" not in form:
        raise BadPayload("an inbound message needs From and Body")
    return "inbound", f"{sid}:inbound"


WHATSAPP = "whatsapp:"
OPT_OUT_TYPES = {"STOP": "STOP", "START": "START"}  # Twilio's OptOutType; HELP changes no consent


def _address(text: str | None, shop_id: int) -> tuple[str, str | None]:
    """``(channel, phone)`` of a Twilio address: ``whatsapp:+44…`` is WhatsApp's, else SMS."""
    if text and text[: len(WHATSAPP)].lower() == WHATSAPP:
        return "whatsapp", wa_phone(text[len(WHATSAPP) :], shop_id)
    return "sms", text


def apply_twilio(shop: Shop, form: dict[str, str], delivery: WebhookDelivery) -> None:
    """A status becomes an engagement; an inbound keyword changes the channel's consent, other
    text is a reply."""
    topic, external_id = parse_form(form)
    at = delivery.received_at
    sid = form.get("MessageSid") or form.get("SmsSid")
    channel, phone = _address(form.get("To") if topic == "status" else form.get("From"), shop.id)
    found = idents(shop, [("phone", phone)])
    linked = message_profile(shop, sid) if topic == "status" else None
    # A status is Twilio's report on our message; an inbound message is the person writing.
    status = form.get("MessageStatus") or ""
    sighting = topic != "status" or is_persons_doing(f"{channel}.{METRICS.get(status, status)}")
    profile = linked or resolve(
        shop, found, source=SOURCE, seen_at=at, evidence={"twilio": sid}, sighting=sighting
    )
    common = {
        "source": SOURCE,
        "external_id": external_id,
        "occurred_at": at,
        "found": found,
        "delivery_id": delivery.id,
    }
    if topic == "status":
        props = {"status": status, "message_sid": sid, "error_code": form.get("ErrorCode") or None}
        report_status(shop, profile, channel, status, METRICS, sid, props, common)
        if profile is not None and is_twilio_opt_out(form.get("ErrorCode")):
            identifier = found[0].value if found else None
            record_opt_out(profile, channel, provider=SOURCE, at=at, external_ref=sid, identifier=identifier)
        return
    word = OPT_OUT_TYPES.get((form.get("OptOutType") or "").strip().upper()) or keyword(form.get("Body"))
    if word is None:
        engage(shop, profile, channel=channel, metric="replied", properties={"message_sid": sid}, **common)
        return
    apply_keyword(shop, profile, channel, word, {"message_sid": sid}, common)
