"""Generic signals from ``POST /api/v1/events``: support touches, push, POS visits, marketplace orders.

Shape: ``{type, occurred_at, identifiers: {email?, phone?, shopify_customer_id?,
web_client_id?, amazon_buyer_id?, ebay_user?}, channel?, properties}``.
A ``push.opened``-style type counts as engagement; ``order.placed`` with
channel ``marketplace`` becomes an order.
"""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal
from typing import Any

from app.analytics.engagement import is_persons_doing
from app.extensions import db
from app.models import Event, Order, OrderLine, Profile, Shop, WebhookDelivery
from app.models.base import utcnow
from app.services.counters import recompute_order_counters
from app.services.engagement import ENGAGEMENT_TYPES
from app.services.identifiers import normalise
from app.services.ingest.common import (
    CLOCK_SKEW,
    BadPayload,
    as_dict,
    as_list,
    currency_code,
    engage,
    first,
    idents,
    money,
    parse_time,
    record_event,
    refresh_search_text,
    text,
    whole,
)
from app.services.resolution import resolve
from app.tenancy import scoped

SOURCE = "api"
IDENTIFIER_KEYS = {
    "email": "email",
    "phone": "phone",
    "shopify_customer_id": "shopify_customer",
    "web_client_id": "web_client",
    "amazon_buyer_id": "amazon_buyer",
    "ebay_user": "ebay_user",
}
FIELDS = frozenset({"id", "type", "occurred_at", "identifiers", "channel", "properties"})
TYPE_RE = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)*$")
CHANNELS = frozenset({"email", "sms", "whatsapp", "push", "web", "pos", "marketplace", "support", "phone"})


def check_event(body: Any, shop: Shop) -> dict:
    """The validated API event (for ``shop``: a marketplace order's money is in its currency).

    Raises:
        BadPayload: a missing or malformed field, named in the message.
    """
    if not isinstance(body, dict):
        raise BadPayload("the body must be a JSON object")
    etype = body.get("type")
    if not isinstance(etype, str) or len(etype) > 60 or not TYPE_RE.match(etype):
        raise BadPayload("type is required: lower-case words joined by dots, e.g. push.opened")
    if parse_time(body.get("occurred_at"), "occurred_at") > utcnow() + CLOCK_SKEW:
        raise BadPayload("occurred_at is in the future: send when the event happened, with its offset")
    _check_id(body.get("id"))
    _check_identifiers(body.get("identifiers"))
    _check_someone_named(body["identifiers"], shop)
    channel = body.get("channel")
    if channel is not None and (not isinstance(channel, str) or channel not in CHANNELS):
        raise BadPayload(f"channel must be one of {', '.join(sorted(CHANNELS))}")
    if body.get("properties") is not None and not isinstance(body["properties"], dict):
        raise BadPayload("properties must be an object")
    if _is_marketplace_order(body):
        _check_marketplace_order(as_dict(body.get("properties")), shop)
    if _is_marketplace_refund(body):
        _check_marketplace_refund(as_dict(body.get("properties")), shop)
    return body


def check_request(body: Any, shop: Shop) -> dict:
    """``check_event``, and the contract's stricter rules for a request arriving now: no unknown
    field (a misspelt "propertes" lost its properties without a word) and ``occurred_at`` written
    as ISO 8601 with its offset.

    At the door only: a delivery accepted before these rules (epoch seconds, an extra key) is
    still processed by the worker, not dead-lettered for good.

    Raises:
        BadPayload: the field and why.
    """
    if isinstance(body, dict):
        unknown = sorted(str(key)[:40] for key in set(body) - FIELDS)
        if unknown:
            known = ", ".join(sorted(FIELDS))
            raise BadPayload(f"unknown fields: {', '.join(unknown[:5])} (an event has {known})")
        _occurred_at(body.get("occurred_at"))
    return check_event(body, shop)


def _occurred_at(value: Any) -> None:
    """Refuse an ``occurred_at`` not written as the contract writes times: ISO 8601 text with its
    offset (``check_event`` then reads it).

    Epoch numbers and times without an offset were read as UTC: an ``occurred_at`` of 0 dated a
    support touch 1970, and a local "10:00" from a till in New York was placed five hours early.
    """
    example = "e.g. 2026-11-01T10:00:00+00:00"
    if not isinstance(value, str) or not value.strip():
        raise BadPayload(f"occurred_at is required: an ISO 8601 time with its offset, {example}")
    try:
        written = dt.datetime.fromisoformat(value.strip())
    except ValueError:
        raise BadPayload(f"occurred_at is not an ISO 8601 time: {value[:40]!r}") from None
    if written.tzinfo is None:
        raise BadPayload(f"occurred_at must carry its UTC offset (+00:00 or Z), {example}")


def _check_id(value: Any) -> None:
    """The client's own id of the event (it dedupes resends): text or a whole number, as stored.

    A longer id was cut to 255 characters, so two events sharing their first 255 were one, and
    the second was dropped as a resend.
    """
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, str | int) or not str(value).strip():
        raise BadPayload("id must be a non-empty text or a whole number")
    if len(str(value)) > 255:
        raise BadPayload("id is longer than 255 characters")


def _check_identifiers(ids: Any) -> None:
    if not isinstance(ids, dict) or not ids:
        raise BadPayload("identifiers must be an object with at least one of " + ", ".join(IDENTIFIER_KEYS))
    unknown = set(ids) - set(IDENTIFIER_KEYS)
    if unknown:
        raise BadPayload(f"unknown identifier kinds: {', '.join(sorted(unknown))}")
    bad = sorted(
        k for k, v in ids.items() if v is not None and (isinstance(v, bool) or not isinstance(v, str | int))
    )
    if bad:
        raise BadPayload(f"identifiers must be text: {', '.join(bad)}")
    if not any(isinstance(v, str | int) and str(v).strip() for v in ids.values()):
        raise BadPayload("identifiers must hold at least one non-empty value")


def _check_marketplace_order(props: dict, shop: Shop) -> None:
    """The order's id, total and lines, here so that a bad one is a 400 and not a dead delivery.

    Amounts are the shop's currency. An order placed in another (``properties.currency``)
    also gives its total in the shop's, ``properties.shop_total``: without a rate we would
    count 100 USD as 100 GBP.
    """
    _check_order_id(props.get("order_id"), "order")
    total = money(props.get("total"))
    if total is None:
        raise BadPayload("a marketplace order needs properties.total")
    if total < 0 or (money(props.get("shop_total")) or 0) < 0:
        raise BadPayload("a marketplace order's total cannot be negative: send a refund as order.refunded")
    currency = currency_code(props.get("currency"), "properties.currency")
    if _foreign(currency, shop) and money(props.get("shop_total")) is None:
        raise BadPayload(
            f"a marketplace order in {currency} needs properties.shop_total, its total "
            f"in the shop's currency ({shop.currency}): amounts are counted in the shop's currency"
        )
    _check_text(props.get("number"), "properties.number")
    for index, item in enumerate(as_list(props.get("line_items"), "properties.line_items")):
        if isinstance(item, dict):
            whole(item.get("quantity"), f"properties.line_items[{index}].quantity")
            money(item.get("price"))
            for key in ("title", "sku", "product_id"):
                _check_text(item.get(key), f"properties.line_items[{index}].{key}")


def _check_text(value: Any, where: str) -> None:
    """A label kept as text (title, SKU, order number): text or a number (``common.text``; not a
    true or false either), else its Python spelling (``{'en': 'Linen shirt'}``) would be stored."""
    if isinstance(value, bool):
        raise BadPayload(f"{where} must be text or a number, not {str(value).lower()}")
    text(value, where)


def _check_order_id(order_id: Any, what: str) -> None:
    """A marketplace order's id: text or a number of at most 64 characters, as stored (cut to
    64, two long ids sharing their start were one order, and the second was lost)."""
    if not order_id or isinstance(order_id, bool) or not isinstance(order_id, str | int):
        raise BadPayload(f"a marketplace {what} needs properties.order_id (text or a number)")
    if len(str(order_id)) > 64:
        raise BadPayload("properties.order_id is longer than 64 characters")


def _is_marketplace_order(body: dict) -> bool:
    return body.get("type") == "order.placed" and body.get("channel") == "marketplace"


def _is_marketplace_refund(body: dict) -> bool:
    return body.get("type") == "order.refunded" and body.get("channel") == "marketplace"


class OrderNotYetKnown(RuntimeError):
    """A refund of an order not received yet: retried with backoff (the order is likely on its
    way), then dead-lettered for ``dlq retry``, never dropped."""


def _check_someone_named(ids: dict, shop: Shop) -> None:
    """At least one identifier that is one once normalised: an event naming only ``not-an-email``
    or a phone we cannot read was answered 202 and then landed on nobody, without a word."""
    unusable = []
    for key, value in ids.items():
        if value is None or not str(value).strip():
            continue
        ident = normalise(IDENTIFIER_KEYS[key], value, shop.country)
        if ident is not None and ident.kind != "raw_phone":
            return
        unusable.append(f"{key} {str(value)[:40]!r}")
    raise BadPayload(f"no usable identifier: {', '.join(unusable)} cannot name anyone")


def _check_marketplace_refund(props: dict, shop: Shop) -> None:
    """The refunded order's id and the amount given back (in the shop's money, as for orders)."""
    _check_order_id(props.get("order_id"), "refund")
    amount = money(props.get("amount"))
    if amount is None or amount <= 0:
        raise BadPayload("a marketplace refund needs properties.amount, more than zero")
    currency = currency_code(props.get("currency"), "properties.currency")
    if _foreign(currency, shop) and (money(props.get("shop_amount")) or 0) <= 0:
        raise BadPayload(
            f"a marketplace refund in {currency} needs properties.shop_amount, the amount "
            f"in the shop's currency ({shop.currency})"
        )


def _marketplace_of(body: dict, props: dict) -> str:
    """The marketplace's name, lower-case (``Amazon`` and ``amazon`` are one marketplace)."""
    ids = body["identifiers"]
    default = "amazon" if ids.get("amazon_buyer_id") else "ebay" if ids.get("ebay_user") else "marketplace"
    return str(first(props.get("marketplace"), default)).strip().lower()[:20]


def _already_recorded(shop: Shop, external_id: str) -> bool:
    """Whether this API event was applied before (its event row is stored with its id)."""
    stmt = scoped(Event, shop.id, Event.id).where(Event.source == SOURCE, Event.external_id == external_id)
    return db.session.scalar(stmt.limit(1)) is not None


def _marketplace_refund(shop: Shop, body: dict) -> None:
    """Lower the refunded order's net value (never below nothing) and its buyer's spend."""
    props = as_dict(body.get("properties"))
    order = _marketplace_order_row(shop, body)
    if order is None:
        raise OrderNotYetKnown(f"marketplace order {str(props['order_id'])[:64]!r} is not known yet")
    amount = money(props["shop_amount"] if _foreign(props.get("currency"), shop) else props["amount"])
    order.refunded = min(order.total, (order.refunded or Decimal("0")) + amount)
    if order.profile_id is not None:
        recompute_order_counters(db.session.get(Profile, order.profile_id))


def _marketplace_order_row(shop: Shop, body: dict) -> Order | None:
    """The stored order a marketplace event names (its marketplace and order id), if any."""
    props = as_dict(body.get("properties"))
    return db.session.scalar(
        scoped(Order, shop.id).where(
            Order.source == _marketplace_of(body, props), Order.external_id == str(props["order_id"])[:64]
        )
    )


def _foreign(currency: Any, shop: Shop) -> bool:
    """A currency code other than the shop's."""
    return (
        isinstance(currency, str)
        and bool(currency.strip())
        and currency.strip().upper() != shop.currency.upper()
    )


def _marketplace_order(shop: Shop, body: dict, profile, at) -> None:
    """An order from Amazon, eBay…: stored like a Shopify order so counters include it.

    The marketplace's name is compared as lower-case text (``Amazon`` and ``amazon`` are one
    marketplace, so one order), and the total counted is the shop's money.
    """
    props = as_dict(body.get("properties"))
    source = _marketplace_of(body, props)
    foreign = _foreign(props.get("currency"), shop)
    if _marketplace_order_row(shop, body) is not None:
        return
    order = Order(
        shop_id=shop.id,
        profile_id=profile.id if profile else None,
        source=source,
        external_id=str(props["order_id"])[:64],
        number=str(props.get("number") or "")[:64] or None,
        channel="marketplace",
        source_name=source,
        placed_at=at,
        processed_at=at,
        source_updated_at=at,
        currency=shop.currency,
        presentment_currency=currency_code(props["currency"], "currency") if foreign else None,
        total=money(props["shop_total"] if foreign else props["total"]),
        refunded=Decimal("0"),
    )
    order.lines = [
        OrderLine(
            shop_id=shop.id,
            product_id=str(item.get("product_id") or "")[:64] or None,
            sku=str(item.get("sku") or "")[:120] or None,
            title=str(item.get("title") or "")[:255] or None,
            quantity=whole(item.get("quantity"), "line_items.quantity") or 1,
            price=money(item.get("price")) or Decimal("0"),
        )
        for item in as_list(props.get("line_items"), "properties.line_items")
        if isinstance(item, dict)
    ]
    db.session.add(order)
    db.session.flush()
    if profile is not None:
        recompute_order_counters(profile)


def apply_api_event(shop: Shop, body: dict, delivery: WebhookDelivery) -> None:
    """Resolve the identifiers, store the event, and count engagement or the order it carries."""
    check_event(body, shop)
    at = parse_time(body["occurred_at"])
    found = idents(shop, [(IDENTIFIER_KEYS[k], v) for k, v in body["identifiers"].items()])
    profile = resolve(
        shop,
        found,
        source=SOURCE,
        seen_at=at,
        evidence={"api_event": delivery.external_id},
        sighting=is_persons_doing(body["type"]),
    )
    if profile is not None and any(i.kind in ("email", "phone") for i in found):
        refresh_search_text(profile)
    etype = body["type"]
    channel = body.get("channel") or (etype.split(".", 1)[0] if etype in ENGAGEMENT_TYPES else None)
    common = {
        "source": SOURCE,
        "external_id": delivery.external_id,
        "occurred_at": at,
        "found": found,
        "properties": as_dict(body.get("properties")),
        "delivery_id": delivery.id,
    }
    if etype in ENGAGEMENT_TYPES:
        ch, metric = etype.split(".", 1)
        engage(shop, profile, channel=ch, metric=metric, **common)
        return
    if _is_marketplace_refund(body) and not _already_recorded(shop, delivery.external_id):
        _marketplace_refund(shop, body)  # before the event: an unknown order stores nothing yet
    if _is_marketplace_order(body) and _marketplace_order_row(shop, body) is not None:
        return  # the same order sent again under another event id: counted and on the timeline once
    stored = record_event(shop, profile, type=etype, channel=channel, **common)
    if stored is not None and _is_marketplace_order(body):
        _marketplace_order(shop, body, profile, at)
    elif stored is not None and profile is not None and channel == "pos" and not etype.startswith("order."):
        # A visit to the store reported on its own (``counters._last_visits`` reads it again).
        last = profile.pos_last_visit_at
        profile.pos_last_visit_at = at if last is None or at > last else last
