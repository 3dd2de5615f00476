"""WhatsApp Cloud API: inbound messages (replies from ``+<wa_id>``) and delivery statuses."""

from __future__ import annotations

from typing import Any

from app.models import Shop, WebhookDelivery
from app.services.ingest.common import (
    BadPayload,
    as_dict,
    as_list,
    engage,
    idents,
    message_profile,
    parse_time,
    record_event,
)
from app.services.resolution import resolve

SOURCE = "whatsapp"
# Status -> engagement metric; "sent" is counted by the sender itself.
METRICS = {"delivered": "delivered", "read": "opened", "failed": "bounced"}


def split_items(body: Any) -> list[tuple[str, str, dict]]:
    """``(topic, external id, item)`` for every message and status in a Cloud API post.

    Raises:
        BadPayload: not a ``whatsapp_business_account`` notification.
    """
    if not isinstance(body, dict) or not isinstance(body.get("entry"), list):
        raise BadPayload("expected a WhatsApp notification with entry[]")
    items: list[tuple[str, str, dict]] = []
    for entry in body["entry"]:
        for change in as_list(as_dict(entry).get("changes"), "entry.changes"):
            value = as_dict(as_dict(change).get("value"))
            for message in as_list(value.get("messages"), "value.messages"):
                if not isinstance(message, dict) or not message.get("id") or not message.get("from"):
                    raise BadPayload("each message needs id and from")
                parse_time(message.get("timestamp"), "message.timestamp")
                items.append(("message", str(message["id"]), message))
            for status in as_list(value.get("statuses"), "value.statuses"):
                if not isinstance(status, dict) or not status.get("id") or not status.get("status"):
                    raise BadPayload("each status needs id and status")
                if not status.get("recipient_id"):
                    raise BadPayload("each status needs recipient_id")
                parse_time(status.get("timestamp"), "status.timestamp")
                items.append(("status", f"{status['id']}:{status['status']}", status))
    return items


def apply_whatsapp(shop: Shop, topic: str, item: dict, delivery: WebhookDelivery) -> None:
    """An inbound message is a reply from ``+<wa_id>``; a status is a delivery/read engagement."""
    at = parse_time(item.get("timestamp"))
    common = {
        "source": SOURCE,
        "external_id": delivery.external_id,
        "occurred_at": at,
        "delivery_id": delivery.id,
    }
    if topic == "message":
        found = idents(shop, [("phone", "+" + str(item["from"]).lstrip("+"))])
        profile = resolve(shop, found, source=SOURCE, seen_at=at, evidence={"whatsapp": item["id"]})
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
    found = idents(shop, [("phone", "+" + str(item["recipient_id"]).lstrip("+"))])
    profile = message_profile(shop, item["id"]) or resolve(
        shop, found, source=SOURCE, seen_at=at, evidence={"whatsapp": item["id"]}
    )
    status = str(item["status"])
    props = {"status": status, "message_id": item["id"]}
    if status in METRICS:
        engage(
            shop, profile, channel="whatsapp", metric=METRICS[status], found=found, properties=props, **common
        )
    else:
        record_event(
            shop,
            profile,
            type=f"whatsapp.{status}"[:60],
            channel="whatsapp",
            found=found,
            properties=props,
            **common,
        )
