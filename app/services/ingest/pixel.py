"""The storefront pixel (Shopify Web Pixels events posted to ``/collect``).

``clientId`` is the browser's identifier; a logged-in customer, a checkout
email or phone, or the visitor's own email or phone typed into a form (an
exit-intent popup) links to it. A form field is the visitor's own only when
nothing in its name or id says it is someone else's (a friend, a referral, a
gift or its recipient, a receiver, a partner, "their", "to") and it is not a
line-item property (``properties[...]``) or a field not typed (hidden, a
checkbox, a choice); then a name saying email
or phone, or else an ``email`` or ``tel`` input type, makes it a contact
(``form_fields``). Any other field links nobody and is not stored as the
visitor's identifier. Validation is strict and explains itself: a malformed event
beside valid ones is kept in the dead-letter queue with the reason, a body
with no valid event is a 400 with the reason, never a 500. Every nested field
applying an event reads is checked at the door where it is read (``as_object``,
``as_list``, ``_scalar``), so a form whose ``elements`` is ``true`` is refused
naming ``data.element.elements``, not a crash that loses the batch.
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
    as_list,
    as_object,
    check_each,
    device_time,
    first,
    idents,
    parse_time,
)
from app.services.ingest.form_fields import contact_kind
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


def _check_event(event: Any, where: str) -> tuple[list[tuple[str, Any]], dict[str, Any]]:
    """Refuse an event that is not the shape Shopify sends; else its identifiers and its timeline
    properties, read once (the worker plans with them rather than reading the event again)."""
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
    try:
        # Read as applying the event reads it: a nested field of the wrong shape (a form's
        # ``elements`` sent as ``true``) is this event's refusal with its path, never a 500.
        pairs = _identifiers(event)
        properties = _properties(event)
    except BadPayload as exc:
        raise BadPayload(f"{where}: {exc.message}") from None
    for kind, raw in pairs:  # as ``idents`` will read them
        if raw not in (None, "") and (isinstance(raw, bool) or not isinstance(raw, str | int)):
            raise BadPayload(f"{where}: {kind} must be text, not {type(raw).__name__}")
    return pairs, properties


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
    checked.events = [_minimised(e) for e in checked.events]
    return checked


def _shop_named(event: Any) -> str | None:
    """The shop a (refused) event names, when it names one as text."""
    shop = refused.field(event, "shop")
    return shop if isinstance(shop, str) and shop.strip() else None


def dead_letters(checked: CheckedBatch) -> list[DeadLetter]:
    """The batch's refused events, each under its event id (or a hash) and its event name, kept
    without a form's other values as a stored event is (``_minimised``), where their shape allows."""
    return refused.dead_letters(
        checked, lambda e: (refused.field(e, "name"), refused.field(e, "id"), _minimised(e))
    )


def _minimised(event: Any) -> Any:
    """The event as stored: a submitted form keeps only the visitor's own contact values.

    The inbox keeps what it stores (for retries, replays and the dead-letter queue), and we use
    nothing else a form holds: a password, a free-text message or a friend's address typed
    into it is not ours to keep. Field names and types stay, for the timeline. The event may be
    of any shape (a refused one): only fields that are objects lose their values.
    """
    if not isinstance(event, dict) or event.get("name") != "form_submitted":
        return event
    data = event.get("data")
    element = data.get("element") if isinstance(data, dict) else None
    fields = element.get("elements") if isinstance(element, dict) else None
    if not isinstance(fields, list):
        return event
    kept = [{**f, "value": None} if isinstance(f, dict) and contact_kind(f) is None else f for f in fields]
    return {**event, "data": {**data, "element": {**element, "elements": kept}}}


def _form_contacts(data: dict) -> list[tuple[str, Any]]:
    """The visitor's own email and phone typed into a submitted form (``form_fields.contact_kind``).

    Raises:
        BadPayload: the form, its ``elements`` or one of them is not the shape Shopify sends,
            or a contact field holds something other than text.
    """
    pairs = []
    element = as_object(data.get("element"), "data.element")
    for index, field in enumerate(as_list(element.get("elements"), "data.element.elements")):
        where = f"data.element.elements[{index}]"
        if not isinstance(field, dict):
            raise BadPayload(f"{where} must be an object, not {type(field).__name__}")
        kind = contact_kind(field)
        if kind is None:
            continue  # not the visitor's contact: a checkbox's flag or a quantity may be anything
        value = field.get("value")
        if value in (None, ""):
            continue
        if not isinstance(value, str):
            raise BadPayload(f"{where}.value must be text, not {type(value).__name__}")
        pairs.append((kind, value))
    return pairs


def _identifiers(event: dict) -> list[tuple[str, Any]]:
    data = as_object(event.get("data"), "data")
    customer = as_object(event.get("customer"), "customer")
    checkout = as_object(data.get("checkout"), "data.checkout")
    shipping = as_object(checkout.get("shippingAddress"), "data.checkout.shippingAddress")
    pairs = [
        ("web_client", event.get("clientId")),
        ("shopify_customer", customer.get("id")),
        ("email", customer.get("email")),
        ("phone", customer.get("phone")),
        ("email", checkout.get("email")),
        ("phone", first(checkout.get("phone"), shipping.get("phone"))),
    ]
    if event["name"] == "form_submitted":
        pairs += _form_contacts(data)
    return pairs


def _scalar(parent: dict, path: str) -> Any:
    """The value at ``path``'s last key in ``parent``, for the timeline: text, a number, a flag or null.

    Raises:
        BadPayload: an object or a list, which no timeline line shows.
    """
    value = parent.get(path.rsplit(".", 1)[-1])
    if isinstance(value, dict | list):
        raise BadPayload(f"{path} must be text or a number, not {type(value).__name__}")
    return value


def _properties(event: dict) -> dict[str, Any]:
    """What the timeline shows, without typed-in contact values (those live in identifiers).

    Raises:
        BadPayload: a field it reads is not the shape Shopify sends (named by its path).
    """
    data = as_object(event.get("data"), "data")
    document = as_object(as_object(event.get("context"), "context").get("document"), "context.document")
    location = as_object(document.get("location"), "context.document.location")
    props: dict[str, Any] = {
        "url": _scalar(location, "context.document.location.href"),
        "referrer": _scalar(document, "context.document.referrer") or None,
        "seq": _scalar(event, "seq"),
    }
    cart_line = as_object(data.get("cartLine"), "data.cartLine")
    path = "data.productVariant" if data.get("productVariant") else "data.cartLine.merchandise"
    variant = as_object(data.get("productVariant") or cart_line.get("merchandise"), path)
    if variant:
        product = as_object(variant.get("product"), f"{path}.product")
        props["product_id"] = _scalar(product, f"{path}.product.id")
        props["variant_id"] = _scalar(variant, f"{path}.id")
        props["sku"] = _scalar(variant, f"{path}.sku")
        props["title"] = _scalar(product, f"{path}.product.title")
    checkout = as_object(data.get("checkout"), "data.checkout")
    if checkout:
        total = as_object(checkout.get("totalPrice"), "data.checkout.totalPrice")
        props["checkout_token"] = _scalar(checkout, "data.checkout.token")
        props["order_id"] = _scalar(
            as_object(checkout.get("order"), "data.checkout.order"), "data.checkout.order.id"
        )
        props["total"] = _scalar(total, "data.checkout.totalPrice.amount")
        props["currency"] = _scalar(total, "data.checkout.totalPrice.currencyCode")
    if data.get("searchResult"):
        props["query"] = _scalar(
            as_object(data["searchResult"], "data.searchResult"), "data.searchResult.query"
        )
    if event["name"] == "form_submitted":
        props["form_id"] = _scalar(as_object(data.get("element"), "data.element"), "data.element.id")
    return {k: v for k, v in props.items() if v not in (None, "")}


def plan_pixel_event(shop: Shop, event: dict, delivery: WebhookDelivery | None) -> Planned:
    """Parse a stored pixel event: the browser and whoever it reveals, and the timeline event."""
    pairs, properties = _check_event(event, "event")
    at = device_time(parse_time(event["timestamp"]), delivery)
    found = idents(shop, pairs)
    return Planned(
        signal=Signal(tuple(found), SOURCE, at, {"pixel_event": event["id"]}),
        event={
            "type": f"web.{event['name']}",
            "channel": "web",
            "source": SOURCE,
            "external_id": event["id"].strip(),
            "occurred_at": at,
            "found": found,
            "properties": properties,
            "delivery_id": delivery.id if delivery else None,
        },
        contact=any(i.kind in ("email", "phone") for i in found),
    )


def apply_pixel_event(shop: Shop, event: dict, delivery: WebhookDelivery | None) -> None:
    """Link the browser to whoever it reveals, and store the event on the profile's timeline."""
    apply_planned(shop, plan_pixel_event(shop, event, delivery))
