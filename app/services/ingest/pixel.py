"""The storefront pixel (Shopify Web Pixels events posted to ``/collect``).

``clientId`` is the browser's identifier; a logged-in customer, a checkout
email or phone, or an email/phone typed into a form (an exit-intent popup)
links to it. Validation is strict and explains itself: a malformed event
beside valid ones is kept in the dead-letter queue with the reason, a body
with no valid event is a 400 with the reason, never a 500.
"""

from __future__ import annotations

import re
from typing import Any

from app.models import Shop, WebhookDelivery
from app.services.ingest import refused
from app.services.ingest.common import (
    BadPayload,
    CheckedBatch,
    Planned,
    apply_planned,
    as_dict,
    check_each,
    first,
    idents,
    not_after,
    parse_time,
)
from app.services.ingest.refused import DeadLetter
from app.services.resolution import Signal

SOURCE = "pixel"
STANDARD_EVENTS = frozenset(
    {
        "page_viewed",
        "product_viewed",
        "product_added_to_cart",
        "product_removed_from_cart",
        "collection_viewed",
        "cart_viewed",
        "search_submitted",
        "checkout_started",
        "checkout_contact_info_submitted",
        "checkout_address_info_submitted",
        "checkout_shipping_info_submitted",
        "payment_info_submitted",
        "checkout_completed",
        "form_submitted",
        "clicked",
        "input_changed",
        "input_blurred",
        "input_focused",
    }
)
CUSTOM_NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,56}$")  # stored as "web.<name>" in events.type (60)
# The pixel batches on our side, so a cap costs nothing; a body over it is refused whole, saying so.
MAX_BATCH = 500


def _check_event(event: Any, where: str) -> None:
    if not isinstance(event, dict):
        raise BadPayload(f"{where}: an event must be a JSON object")
    for key in ("id", "clientId", "name", "shop"):
        value = event.get(key)
        if not isinstance(value, str) or not value.strip():
            raise BadPayload(f"{where}: {key} is required (a non-empty string)")
        if len(value) > 255:
            raise BadPayload(f"{where}: {key} is longer than 255 characters")
    name, kind = event["name"], event.get("type", "standard")
    if kind == "custom" and not CUSTOM_NAME.match(name):
        raise BadPayload(f"{where}: custom event name {name[:60]!r} is not allowed")
    if kind != "custom" and name not in STANDARD_EVENTS:
        raise BadPayload(f"{where}: unknown event name {name[:60]!r}")
    parse_time(event.get("timestamp"), f"{where}: timestamp")
    for key in ("data", "context", "customer"):
        if event.get(key) is not None and not isinstance(event[key], dict):
            raise BadPayload(f"{where}: {key} must be an object")
    for kind, raw in _identifiers(event):  # as ``idents`` will read them
        if raw not in (None, "") and (isinstance(raw, bool) or not isinstance(raw, str | int)):
            raise BadPayload(f"{where}: {kind} must be text, not {type(raw).__name__}")


def parse_events(body: Any) -> CheckedBatch:
    """A ``/collect`` body (one event or a batch): its valid events, and the others with their
    reasons (each naming the event's position), for the dead-letter queue (``dead_letters``).

    Raises:
        BadPayload: the body as a whole is wrong (empty, too long, events naming several
            shops, refused ones included), or no event of it is valid.
    """
    events = body if isinstance(body, list) else [body]
    if not events:
        raise BadPayload("the batch is empty")
    if len(events) > MAX_BATCH:
        raise BadPayload(
            f"a batch holds at most {MAX_BATCH} events, this one {len(events)}: send it in smaller batches"
        )
    checked = check_each(events, _check_event, batch=isinstance(body, list))
    if not checked.events:
        raise checked.refusal()
    shops = {e["shop"].strip().lower() for e in checked.events}
    # A refused event that names another shop would be dead-lettered in this one's queue.
    shops |= {s.strip().lower() for s in map(_shop_named, checked.rejected) if s}
    if len(shops) > 1:
        raise BadPayload("all events of a batch must name the same shop")
    return checked


def _shop_named(event: Any) -> str | None:
    """The shop a (refused) event names, when it names one as text."""
    shop = refused.field(event, "shop")
    return shop if isinstance(shop, str) and shop.strip() else None


def dead_letters(checked: CheckedBatch) -> list[DeadLetter]:
    """The batch's refused events, each under its event id (or a hash) and its event name."""
    return refused.dead_letters(checked, lambda e: (refused.field(e, "name"), refused.field(e, "id"), e))


def _form_contacts(data: dict) -> list[tuple[str, Any]]:
    """Email and phone values typed into a submitted form."""
    pairs = []
    for element in as_dict(data.get("element")).get("elements") or []:
        if not isinstance(element, dict) or not isinstance(element.get("value"), str):
            continue
        label = " ".join(str(element.get(k) or "") for k in ("name", "type", "id")).lower()
        if "email" in label:
            pairs.append(("email", element["value"]))
        elif "phone" in label or "tel" in label.split():
            pairs.append(("phone", element["value"]))
    return pairs


def _identifiers(event: dict) -> list[tuple[str, Any]]:
    data = as_dict(event.get("data"))
    customer = as_dict(event.get("customer"))
    checkout = as_dict(data.get("checkout"))
    pairs = [
        ("web_client", event.get("clientId")),
        ("shopify_customer", customer.get("id")),
        ("email", customer.get("email")),
        ("phone", customer.get("phone")),
        ("email", checkout.get("email")),
        ("phone", first(checkout.get("phone"), as_dict(checkout.get("shippingAddress")).get("phone"))),
    ]
    if event["name"] == "form_submitted":
        pairs += _form_contacts(data)
    return pairs


def _properties(event: dict) -> dict[str, Any]:
    """What the timeline shows, without typed-in contact values (those live in identifiers)."""
    data = as_dict(event.get("data"))
    context = as_dict(event.get("context"))
    document = as_dict(context.get("document"))
    props: dict[str, Any] = {
        "url": as_dict(document.get("location")).get("href"),
        "referrer": document.get("referrer") or None,
        "seq": event.get("seq"),
    }
    variant = as_dict(first(data.get("productVariant"), as_dict(data.get("cartLine")).get("merchandise")))
    if variant:
        props["product_id"] = as_dict(variant.get("product")).get("id")
        props["variant_id"] = variant.get("id")
        props["sku"] = variant.get("sku")
        props["title"] = as_dict(variant.get("product")).get("title")
    checkout = as_dict(data.get("checkout"))
    if checkout:
        props["checkout_token"] = checkout.get("token")
        props["order_id"] = as_dict(checkout.get("order")).get("id")
        props["total"] = as_dict(checkout.get("totalPrice")).get("amount")
        props["currency"] = as_dict(checkout.get("totalPrice")).get("currencyCode")
    if data.get("searchResult"):
        props["query"] = as_dict(data["searchResult"]).get("query")
    if event["name"] == "form_submitted":
        props["form_id"] = as_dict(data.get("element")).get("id")
    return {k: v for k, v in props.items() if v not in (None, "")}


def plan_pixel_event(shop: Shop, event: dict, delivery: WebhookDelivery | None) -> Planned:
    """Parse a stored pixel event: the browser and whoever it reveals, and the timeline event."""
    _check_event(event, "event")
    at = not_after(parse_time(event["timestamp"]), delivery)
    found = idents(shop, _identifiers(event))
    return Planned(
        signal=Signal(tuple(found), SOURCE, at, {"pixel_event": event["id"]}),
        event={
            "type": f"web.{event['name']}",
            "channel": "web",
            "source": SOURCE,
            "external_id": event["id"].strip(),
            "occurred_at": at,
            "found": found,
            "properties": _properties(event),
            "delivery_id": delivery.id if delivery else None,
        },
        contact=any(i.kind in ("email", "phone") for i in found),
    )


def apply_pixel_event(shop: Shop, event: dict, delivery: WebhookDelivery | None) -> None:
    """Link the browser to whoever it reveals, and store the event on the profile's timeline."""
    apply_planned(shop, plan_pixel_event(shop, event, delivery))
