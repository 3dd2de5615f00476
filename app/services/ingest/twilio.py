"""Twilio SMS: delivery status callbacks and inbound messages (with the STOP/START keywords)."""

from __future__ import annotations

import re

from app.analytics.engagement import is_persons_doing
from app.models import Shop, WebhookDelivery
from app.services.ingest.common import BadPayload, engage, idents, message_profile, report_status
from app.services.ingest.keywords import apply_keyword, keyword
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


def apply_twilio(shop: Shop, form: dict[str, str], delivery: WebhookDelivery) -> None:
    """A status becomes an engagement; an inbound keyword changes SMS consent, other text is a reply."""
    topic, external_id = parse_form(form)
    at = delivery.received_at
    sid = form.get("MessageSid") or form.get("SmsSid")
    phone = form.get("To") if topic == "status" else form.get("From")
    found = idents(shop, [("phone", phone)])
    linked = message_profile(shop, sid) if topic == "status" else None
    # A status is Twilio's report on our message; an inbound message is the person writing.
    status = form.get("MessageStatus") or ""
    sighting = topic != "status" or is_persons_doing(f"sms.{METRICS.get(status, status)}")
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
        report_status(shop, profile, "sms", status, METRICS, sid, props, common)
        if profile is not None and is_twilio_opt_out(form.get("ErrorCode")):
            identifier = found[0].value if found else None
            record_opt_out(profile, "sms", provider=SOURCE, at=at, external_ref=sid, identifier=identifier)
        return
    word = keyword(form.get("Body"))
    if word is None:
        engage(shop, profile, channel="sms", metric="replied", properties={"message_sid": sid}, **common)
        return
    apply_keyword(shop, profile, "sms", word, {"message_sid": sid}, common)
