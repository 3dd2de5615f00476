"""WhatsApp Cloud API: inbound messages (replies from ``+<wa_id>``, or STOP/START) and delivery statuses."""

from __future__ import annotations

from typing import Any

from app.analytics.engagement import is_persons_doing
from app.models import Shop, WebhookDelivery
from app.services.ingest import refused
from app.services.ingest.common import (
    BadPayload,
    CheckedBatch,
    as_dict,
    as_list,
    check_each,
    engage,
    idents,
    message_profile,
    not_after,
    parse_time,
    report_status,
)
from app.services.ingest.keywords import apply_keyword, keyword
from app.services.ingest.refused import DeadLetter
from app.services.ingest.whatsapp_numbers import wa_phone
from app.services.provider_opt_outs import WHATSAPP_MARKETING_STOPPED, is_whatsapp_opt_out, record_opt_out
from app.services.resolution import resolve

SOURCE = "whatsapp"
# Status -> engagement metric; "sent" is counted by the sender itself.
METRICS = {"delivered": "delivered", "read": "opened", "failed": "bounced"}


def split_items(body: Any) -> tuple[list[tuple[str, str, dict]], CheckedBatch]:
    """``(topic, external id, item)`` for every valid message and status of a Cloud API post,
    and the items refused with their reasons (each naming its place), for ``dead_letters``.

    Raises:
        BadPayload: not a ``whatsapp_business_account`` notification, or no item of it is valid.
    """
    if not isinstance(body, dict) or not isinstance(body.get("entry"), list):
        raise BadPayload("expected a WhatsApp notification with entry[]")
    found: list[tuple[str, dict]] = []
    for entry in body["entry"]:
        for change in as_list(as_dict(entry).get("changes"), "entry.changes"):
            value = as_dict(as_dict(change).get("value"))
            found += [("message", m) for m in as_list(value.get("messages"), "value.messages")]
            found += [("status", s) for s in as_list(value.get("statuses"), "value.statuses")]
    checked = check_each(found, _check_item, batch=True, name="items")
    if checked.refused and not checked.events:
        raise checked.refusal()
    items = [
        ("message", str(item["id"]), item)
        if topic == "message"
        else ("status", f"{item['id']}:{item['status']}", item)
        for topic, item in checked.events
    ]
    return items, checked


def dead_letters(checked: CheckedBatch) -> list[DeadLetter]:
    """The refused items under their topic (``message``/``status``, which a retry is routed by)
    and their id (``<id>:<status>`` for a status, as valid ones are kept), or a hash."""

    def describe(found: tuple[str, Any]) -> tuple[str, Any, Any]:
        topic, item = found
        own_id, status = refused.field(item, "id"), refused.field(item, "status")
        if topic == "status" and isinstance(status, str) and refused.is_id(own_id):
            own_id = f"{own_id}:{status}"
        return topic, own_id, item

    return refused.dead_letters(checked, describe)


def _check_item(found: tuple[str, Any], where: str) -> None:
    topic, item = found
    if topic == "message":
        if not isinstance(item, dict) or not item.get("id") or not item.get("from"):
            raise BadPayload(f"{where}: each message needs id and from")
        parse_time(item.get("timestamp"), f"{where}: message.timestamp")
        return
    if not isinstance(item, dict) or not item.get("id") or not item.get("status"):
        raise BadPayload(f"{where}: each status needs id and status")
    if not item.get("recipient_id"):
        raise BadPayload(f"{where}: each status needs recipient_id")
    parse_time(item.get("timestamp"), f"{where}: status.timestamp")


def _inbound_text(item: dict) -> object:
    """What the customer said: a typed text, or the label of a button they tapped (a template's
    quick reply such as "Stop promotions", an interactive message's reply)."""
    kind = item.get("type")
    if kind == "text":
        return as_dict(item.get("text")).get("body")
    if kind == "button":
        return as_dict(item.get("button")).get("text")
    if kind == "interactive":
        reply = as_dict(item.get("interactive"))
        return as_dict(reply.get("button_reply") or reply.get("list_reply")).get("title")
    return None


def apply_whatsapp(shop: Shop, topic: str, item: dict, delivery: WebhookDelivery) -> None:
    """An inbound message is a reply from ``+<wa_id>``; a status is a delivery/read engagement."""
    _check_item((topic, item), "item")  # a refused item retried from the dead-letter queue fails here
    at = not_after(parse_time(item.get("timestamp")), delivery)
    common = {
        "source": SOURCE,
        # The provider's id, also for a refused item retried once the code takes it: its event
        # is then the one a corrected resend of the item would store, not a second one.
        "external_id": refused.provider_id(delivery.external_id),
        "occurred_at": at,
        "delivery_id": delivery.id,
    }
    if topic == "message":
        found = idents(shop, [("phone", wa_phone(item["from"], shop.id))])
        profile = resolve(shop, found, source=SOURCE, seen_at=at, evidence={"whatsapp": item["id"]})
        text = _inbound_text(item)
        word = keyword(text if isinstance(text, str) else None)
        if word is not None:  # STOP or START, as on SMS: the customer's word on this channel
            apply_keyword(
                shop, profile, "whatsapp", word, {"message_id": str(item["id"])}, {**common, "found": found}
            )
            return
        engage(
            shop,
            profile,
            channel="whatsapp",
            metric="replied",
            found=found,
            properties={"type": item.get("type")},
            **common,
        )
        return
    found = idents(shop, [("phone", wa_phone(item["recipient_id"], shop.id))])
    status = str(item["status"])
    sighting = is_persons_doing(f"whatsapp.{METRICS.get(status, status)}")  # read: yes; delivered: no
    profile = message_profile(shop, item["id"]) or resolve(
        shop, found, source=SOURCE, seen_at=at, evidence={"whatsapp": item["id"]}, sighting=sighting
    )
    props = {"status": status, "message_id": item["id"]}
    opted_out = status == "failed" and is_whatsapp_opt_out(item.get("errors"))
    if opted_out:
        props["error_code"] = WHATSAPP_MARKETING_STOPPED
    report_status(
        shop, profile, "whatsapp", status, METRICS, str(item["id"]), props, {**common, "found": found}
    )
    if opted_out and profile is not None:
        phone = found[0].value if found else None
        record_opt_out(
            profile, "whatsapp", provider=SOURCE, at=at, external_ref=str(item["id"]), identifier=phone
        )
