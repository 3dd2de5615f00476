"""Shopify orders and refunds: the order row, its lines, and the buyer's counters.

Out-of-order delivery is safe: an order version is applied only when its
``updated_at`` is newer than the one stored, and refunds are kept as
events keyed by order, so a refund that arrives before its order is
counted as soon as the order lands.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs, urlsplit

import sqlalchemy as sa

from app.extensions import db
from app.models import Event, Order, OrderLine, Profile, Shop, WebhookDelivery
from app.models.base import utcnow
from app.services.consent_batch import ConsentBatch
from app.services.counters import recompute_order_counters, recompute_order_counters_many
from app.services.ingest.common import (
    BadPayload,
    Planned,
    as_dict,
    as_list,
    currency_code,
    first,
    idents,
    is_persons_doing,
    money,
    not_negative,
    optional_time,
    parse_time,
    record_event,
    refresh_search_text,
    text,
    update_details,
    whole,
)
from app.services.ingest.customers import apply_inline_consent
from app.services.resolution import Signal, resolve
from app.tenancy import scoped

SOURCE = "shopify"
MARKETPLACES = frozenset({"amazon", "ebay", "etsy", "walmart", "zalando", "google", "facebook", "tiktok"})
ZERO = Decimal("0")
CENT = Decimal("0.01")
ID_LENGTH = 64  # orders.external_id: Shopify ids are numbers of up to 20 digits


def sales_channel(source_name: str | None) -> str:
    """``online``, ``pos`` or ``marketplace`` from Shopify's ``source_name``."""
    name = (source_name or "").lower()
    if name == "pos":
        return "pos"
    if name in MARKETPLACES or "marketplace" in name:
        return "marketplace"
    return "online"


def utm_source(landing_site: str | None) -> str | None:
    """``utm_source`` from the landing page URL, lower-cased; None when there is none or the URL
    cannot be read (it is the shopper's address bar: ``http://[shop/`` must not lose the order)."""
    if not landing_site:
        return None
    try:
        query = urlsplit(landing_site).query
    except ValueError:
        return None
    values = parse_qs(query).get("utm_source")
    return values[0].strip().lower()[:120] if values and values[0].strip() else None


def set_amount(money_set: Any, side: str = "shop_money") -> Decimal | None:
    """One side of a Shopify money set (``{shop_money: {amount}, presentment_money: {amount}}``)."""
    return money(as_dict(as_dict(money_set).get(side)).get("amount"))


def shop_amount(payload: dict, field: str) -> Decimal | None:
    """An amount in shop money: ``<field>_set.shop_money`` when present (multi-currency)."""
    amount = set_amount(payload.get(f"{field}_set"))
    return amount if amount is not None else money(payload.get(field))


def check_order(payload: Any) -> None:
    """Reject a body that is not a Shopify order object.

    Raises:
        BadPayload: with what is missing.
    """
    if not isinstance(payload, dict):
        raise BadPayload("an order must be a JSON object")
    if (
        isinstance(payload.get("id"), bool)
        or not isinstance(payload.get("id"), int | str)
        or payload.get("id") in ("", None)
    ):
        raise BadPayload("order.id is required (a number or text)")
    if len(str(payload["id"])) > ID_LENGTH:
        raise BadPayload(f"order.id is longer than {ID_LENGTH} characters")
    if not isinstance(payload.get("line_items", []), list):
        raise BadPayload("order.line_items must be a list")
    if payload.get("created_at") in (None, ""):
        raise BadPayload("order.created_at is required")


def check_order_values(shop: Shop, payload: Any) -> None:
    """``check_order`` and every value applying the order reads, read at the door without the
    database: the buyer's identifiers and the times (``buyer_signal``), the order's fields and
    lines (``_fill_order`` into an order nobody stores), its inline refunds and consent.

    Raises:
        BadPayload: with the field and why (a time that is not one, an email sent as a list).
    """
    check_order(payload)
    _not_in_the_future(payload)
    buyer_signal(shop, payload, None)
    updated_at = optional_time(payload.get("updated_at"), "updated_at")
    _fill_order(Order(shop_id=shop.id), payload, shop, updated_at)
    rate = order_rate(payload)
    for refund in as_list(payload.get("refunds"), "refunds"):
        if isinstance(refund, dict) and refund.get("id") is not None and refund.get("created_at"):
            _check_refund_values(shop, refund, rate)
    from app.services.ingest.customers import CONSENT_FIELDS, check_consent_values

    customer = as_dict(payload.get("customer"))
    for name in CONSENT_FIELDS.values():
        if isinstance(customer.get(name), dict):
            check_consent_values(customer[name], f"customer.{name}")


# How far an order's times may run ahead of our clock (Shopify's clock, an offset mistyped by a
# migration tool): an order dated 2099 would keep its buyer "recent" and loyal for decades.
FUTURE_SLACK = dt.timedelta(days=1)


def _not_in_the_future(payload: dict) -> None:
    latest = utcnow() + FUTURE_SLACK
    for name in ("created_at", "processed_at"):
        moment = optional_time(payload.get(name), name)
        if moment is not None and moment > latest:
            raise BadPayload(f"{name} is in the future: {str(payload.get(name))[:40]!r}")


def check_refund_values(shop: Shop, payload: Any) -> None:
    """``check_refund`` and every value recording the refund reads (its time and amounts)."""
    check_refund(payload)
    _check_refund_values(shop, payload, None)


def _check_refund_values(shop: Shop, refund: dict, rate: Decimal | None) -> None:
    parse_time(first(refund.get("processed_at"), refund.get("created_at")), "refund.created_at")
    _refund_amount(refund, shop, rate)


def check_refund(payload: Any) -> None:
    """Reject a body that is not a Shopify refund object."""
    if (
        not isinstance(payload, dict)
        or payload.get("id") in (None, "")
        or payload.get("order_id") in (None, "")
    ):
        raise BadPayload("a refund needs id and order_id")
    if any(len(str(payload[key])) > ID_LENGTH for key in ("id", "order_id")):
        raise BadPayload(f"a refund's id and order_id are at most {ID_LENGTH} characters")


def _refund_amount(refund: dict, shop: Shop, order_rate: Decimal | None = None) -> Decimal:
    """What a refund gave back, in shop money.

    A refund's transactions are in the order's presentment currency (the customer's): a
    multi-currency order refunded 140.40 USD gave back 120.00 of a GBP shop's money. An
    amount in another currency than the shop's is converted at the rate the refund's own
    money sets show (its lines, shipping and adjustments in both currencies), else at the
    order's (``order_rate``, shop over presentment), else taken as it is (``_refund_parts``).
    """
    return _refund_parts(refund, shop, order_rate)[0]


def _refund_parts(refund: dict, shop: Shop, order_rate: Decimal | None) -> tuple[Decimal, Decimal]:
    """``(amount, unconverted)``: the refund in shop money, and how much of it is the customer's
    currency taken as it is for want of a rate (a refund delivered before its order, with no
    money sets): ``_convert_early_refunds`` converts it when the order comes."""
    total = unconverted = ZERO
    for tx in as_list(refund.get("transactions"), "transactions"):
        if (
            not isinstance(tx, dict)
            or tx.get("kind") != "refund"
            or tx.get("status") not in ("success", None)
        ):
            continue
        shop_money = set_amount(tx.get("amount_set"))
        if shop_money is not None:
            total += shop_money
            continue
        amount = not_negative(money(tx.get("amount")), "transactions.amount") or ZERO
        currency = str(tx.get("currency") or "").upper()
        foreign = currency not in ("", shop.currency.upper())
        rate = (refund_rate(refund) or order_rate) if foreign else None
        total += (amount * rate).quantize(CENT) if rate else amount
        if foreign and not rate:
            unconverted += amount
    return total, unconverted


def refund_rate(refund: dict) -> Decimal | None:
    """Shop money per unit of presentment money, from the refund's money sets; None if it has none."""
    shop_total = presentment_total = ZERO
    sets = [
        item.get(name)
        for item in as_list(refund.get("refund_line_items"), "refund_line_items")
        if isinstance(item, dict)
        for name in ("subtotal_set", "total_tax_set")
    ]
    for key in ("order_adjustments", "refund_shipping_lines"):
        for item in as_list(refund.get(key), key):
            if isinstance(item, dict):
                sets += [item.get("amount_set"), item.get("subtotal_amount_set")]
    for pair in sets:
        shop_part, presentment = set_amount(pair), set_amount(pair, "presentment_money")
        if shop_part is not None and presentment:
            shop_total += abs(shop_part)
            presentment_total += abs(presentment)
    return shop_total / presentment_total if presentment_total else None


def order_rate(payload: dict) -> Decimal | None:
    """Shop money per unit of presentment money, from an order's ``total_price_set``."""
    pair = payload.get("total_price_set")
    shop_money, presentment = set_amount(pair), set_amount(pair, "presentment_money")
    return shop_money / presentment if shop_money is not None and presentment else None


def _refund_events(shop_id: int, order_external_id: str) -> dict[str, Decimal]:
    prefix = f"refund:{order_external_id}:"
    stmt = scoped(Event, shop_id, Event.external_id, Event.properties).where(
        Event.source == SOURCE,
        Event.type == "order.refunded",
        Event.external_id.startswith(prefix, autoescape=True),
    )
    return {
        ext[len(prefix) :]: Decimal(str(props.get("amount", "0"))) for ext, props in db.session.execute(stmt)
    }


def _refunded_total(shop: Shop, order_external_id: str) -> Decimal:
    """Every known refund of the order counted once, whether it came inline or on its own topic."""
    return sum(_refund_events(shop.id, order_external_id).values(), ZERO)


def _recorder(shop: Shop, run: OrderRun | None):
    """``record_event`` now, or left to the batch's one INSERT."""
    if run is None:
        return lambda profile, **event: record_event(shop, profile, **event)
    return lambda profile, **event: run.events.append((profile, event))


def _record_refund(
    shop: Shop,
    profile: Profile | None,
    order_external_id: str,
    refund: dict,
    delivery,
    run=None,
    rate: Decimal | None = None,
) -> None:
    """One ``order.refunded`` event per refund id: the single record refunds are summed from.

    A refund's amount is what its successful transactions gave back. A version seen later
    can add to it (a transaction first reported ``pending``, then ``success`` in a newer
    order version) and never takes away (``success`` is final, and a failed one never
    counted), so the record keeps the largest amount seen.
    """
    amount, unconverted = _refund_parts(refund, shop, rate)
    refund_id = str(refund["id"])
    external_id = f"refund:{order_external_id}:{refund_id}"
    if run is not None:
        known = run.refunds.setdefault(order_external_id, {})
        if refund_id in known:  # recorded before, in this batch or earlier: only ever raised
            if amount > known[refund_id]:
                known[refund_id] = amount
                _raise_refund(shop, run, external_id, amount)
            return
        known[refund_id] = amount
    event = {
        "type": "order.refunded",
        "source": SOURCE,
        "external_id": external_id,
        "occurred_at": parse_time(first(refund.get("processed_at"), refund.get("created_at")), "created_at"),
        "properties": {"order_id": order_external_id, "refund_id": refund_id, "amount": str(amount)},
        "delivery_id": delivery.id if delivery else None,
    }
    if unconverted:
        event["properties"]["unconverted"] = str(unconverted)
    if run is not None:
        run.events.append((profile, event))
    elif record_event(shop, profile, **event) is None:
        _raise_refund(shop, None, external_id, amount)


def _convert_early_refunds(shop: Shop, order_external_id: str, rate: Decimal, run: OrderRun | None) -> None:
    """Convert at the order's ``rate`` what refunds delivered before it booked unconverted.

    Such a refund named an amount in the customer's currency and nothing to convert it by:
    70.20 USD of a GBP shop's order was booked as 70.20 GBP, and kept (a record is only
    ever raised). Its record notes the unconverted part, converted once the order is known.
    """
    prefix = f"refund:{order_external_id}:"
    pending = [e for _p, e in run.events if e["external_id"].startswith(prefix)] if run is not None else []
    stmt = scoped(Event, shop.id).where(
        Event.source == SOURCE,
        Event.type == "order.refunded",
        Event.external_id.startswith(prefix, autoescape=True),
    )
    for event in pending:
        event["properties"] = _converted(event["properties"], rate, run, order_external_id)
    if run is not None and order_external_id not in run.early:
        return  # the batch read this order's stored refunds already: none is unconverted
    for stored in db.session.scalars(stmt):
        if (stored.properties or {}).get("unconverted"):
            stored.properties = _converted(stored.properties, rate, run, order_external_id)


def _converted(props: dict, rate: Decimal, run: OrderRun | None, order_external_id: str) -> dict:
    """A refund record's properties with its unconverted part converted at ``rate`` (noted in ``run``)."""
    if not props.get("unconverted"):
        return props
    part = Decimal(str(props["unconverted"]))
    amount = Decimal(str(props.get("amount", "0"))) - part + (part * rate).quantize(CENT)
    if run is not None:
        run.refunds.setdefault(order_external_id, {})[str(props.get("refund_id"))] = amount
    return {**{k: v for k, v in props.items() if k != "unconverted"}, "amount": str(amount)}


def _raise_refund(shop: Shop, run: OrderRun | None, external_id: str, amount: Decimal) -> None:
    """Raise a recorded refund's amount to ``amount`` (where it is lower)."""
    pending = [e for _p, e in run.events if e["external_id"] == external_id] if run is not None else []
    if pending:  # written by this batch's one INSERT, still to come
        pending[0]["properties"] = {**pending[0]["properties"], "amount": str(amount)}
        return
    stored = db.session.scalar(
        scoped(Event, shop.id).where(Event.source == SOURCE, Event.external_id == external_id)
    )
    if stored is not None and Decimal(str(stored.properties.get("amount", "0"))) < amount:
        stored.properties = {**stored.properties, "amount": str(amount)}


def buyer_signal(shop: Shop, payload: dict, delivery: WebhookDelivery | None) -> tuple[Signal, list]:
    """The buyer's identifiers as the signal to resolve, and the identifiers themselves."""
    customer = as_dict(payload.get("customer"))
    found = idents(
        shop,
        [
            ("shopify_customer", customer.get("id")),
            ("email", first(customer.get("email"), payload.get("email"), payload.get("contact_email"))),
            ("phone", first(customer.get("phone"), payload.get("phone"))),
        ],
    )
    evidence = {"order": str(payload.get("id")), "delivery": delivery.external_id if delivery else None}
    # Only the purchase is the buyer's doing: orders/updated, /paid and /cancelled come of a
    # fulfilment, a capture or the merchant's edit, days later, and do not move their last seen.
    sighting = delivery is None or delivery.topic == "orders/create"
    # A sighting is dated when they bought: an imported order's updated_at is its last refund,
    # cancellation or fulfilment, which made a buyer of August look seen in October.
    updated_at = None if sighting else optional_time(payload.get("updated_at"), "updated_at")
    seen_at = updated_at or purchase_time(payload)
    return Signal(tuple(found), SOURCE, seen_at, evidence, sighting), found


def purchase_time(payload: dict) -> dt.datetime:
    """When the order was bought: created, or processed where that is earlier.

    An order imported from another platform is created now and processed when it was
    bought (Shopify's reports date it so): its buyer bought then, not today.
    """
    created = parse_time(first(payload.get("created_at"), payload.get("processed_at")), "created_at")
    processed = optional_time(payload.get("processed_at"), "processed_at")
    return processed if processed is not None and processed < created else created


def _buyer(shop: Shop, payload: dict, delivery: WebhookDelivery | None) -> tuple[Profile | None, list]:
    """Resolve the buyer from the identifiers the order carries, and refresh what it tells of them."""
    signal, found = buyer_signal(shop, payload, delivery)
    profile = resolve(
        shop, found, source=SOURCE, seen_at=signal.seen_at, evidence=signal.evidence, sighting=signal.sighting
    )
    if profile is not None:
        update_buyer(shop, profile, payload, delivery)
        refresh_search_text(profile)
    return profile, found


def update_buyer(
    shop: Shop,
    profile: Profile,
    payload: dict,
    delivery: WebhookDelivery | None,
    consents: ConsentBatch | None = None,
) -> None:
    """Names, location, currency (``update_details``) and inline consent the order tells of its buyer."""
    update_details(profile, *order_details(payload))
    customer = as_dict(payload.get("customer"))
    if customer:
        apply_inline_consent(shop, profile, customer, delivery, consents)


def order_details(payload: dict) -> tuple[Any, ...]:
    """``update_details``' arguments from an order version: its time, the buyer's names, address and
    currency; a guest's (no customer object) names never overwrite a customer's own.

    The address is the buyer's: billing, then the customer's default, and the shipping address
    only when the order has neither (a gift's recipient lives elsewhere, and the buyer's time zone
    decides quiet hours); the first of them that names a country.
    """
    customer = as_dict(payload.get("customer"))
    address = as_dict(first(payload.get("billing_address"), payload.get("shipping_address")))
    return (
        optional_time(first(payload.get("updated_at"), payload.get("created_at")), "updated_at"),
        (
            first(customer.get("first_name"), address.get("first_name")),
            first(customer.get("last_name"), address.get("last_name")),
        ),
        next(
            (
                address
                for address in (
                    payload.get("billing_address"),
                    customer.get("default_address"),
                    payload.get("shipping_address"),
                )
                if isinstance(address, dict) and address.get("country_code")
            ),
            None,
        ),
        currency_code(payload.get("currency"), "currency"),
        bool(customer),
    )


def _fill_order(order: Order, payload: dict, shop: Shop, updated_at: dt.datetime | None) -> None:
    billing, shipping = as_dict(payload.get("billing_address")), as_dict(payload.get("shipping_address"))
    customer = as_dict(payload.get("customer"))
    order.number = str(first(payload.get("name"), payload.get("order_number")) or "")[:64] or None
    order.source_name = str(payload.get("source_name") or "")[:64] or None
    order.channel = sales_channel(order.source_name)
    order.location_id = text(payload.get("location_id"), "location_id", 64)
    order.processed_at = optional_time(payload.get("processed_at"), "processed_at")
    order.placed_at = purchase_time(payload)
    order.source_updated_at = updated_at
    order.currency = currency_code(payload.get("currency"), "currency") or shop.currency
    order.presentment_currency = currency_code(payload.get("presentment_currency"), "presentment_currency")
    order.total = not_negative(shop_amount(payload, "total_price"), "total_price") or ZERO
    order.presentment_total = set_amount(payload.get("total_price_set"), "presentment_money")
    order.subtotal = not_negative(shop_amount(payload, "subtotal_price"), "subtotal_price")
    order.total_discounts = not_negative(shop_amount(payload, "total_discounts"), "total_discounts")
    order.total_tax = not_negative(shop_amount(payload, "total_tax"), "total_tax")
    order.financial_status = str(payload.get("financial_status") or "")[:32] or None
    order.cancelled_at = optional_time(payload.get("cancelled_at"), "cancelled_at")
    order.test = payload.get("test") is True
    order.discount_codes = [
        {"code": d.get("code"), "amount": d.get("amount"), "type": d.get("type")}
        for d in as_list(payload.get("discount_codes"), "discount_codes")
        if isinstance(d, dict)
    ]
    order.landing_site = text(payload.get("landing_site"), "landing_site")
    order.referring_site = text(payload.get("referring_site"), "referring_site")
    order.utm_source = utm_source(order.landing_site)
    order.billing_country = (billing.get("country_code") or None) and str(billing["country_code"])[:2]
    order.billing_province = (billing.get("province_code") or None) and str(billing["province_code"])[:16]
    order.shipping_country = (shipping.get("country_code") or None) and str(shipping["country_code"])[:2]
    order.shipping_province = (shipping.get("province_code") or None) and str(shipping["province_code"])[:16]
    order.email = text(first(payload.get("email"), customer.get("email")), "email", 320)
    order.phone = text(first(payload.get("phone"), customer.get("phone")), "phone", 40)
    name = " ".join(str(p) for p in (customer.get("first_name"), customer.get("last_name")) if p)
    order.customer_name = name[:255] or None
    lines = as_list(payload.get("line_items"), "line_items")
    order.lines = [_line(shop, item) for item in lines if isinstance(item, dict)]


def _line(shop: Shop, item: dict) -> OrderLine:
    def field(key: str, size: int = 64) -> str | None:
        return text(item.get(key), f"line_items.{key}", size)

    price_set = as_dict(as_dict(item.get("price_set")).get("shop_money"))
    return OrderLine(
        shop_id=shop.id,
        external_id=field("id"),
        product_id=field("product_id"),
        variant_id=field("variant_id"),
        sku=field("sku", 120),
        title=field("title", 255),
        quantity=not_negative(whole(item.get("quantity"), "line_items.quantity"), "line_items.quantity"),
        price=not_negative(money(first(price_set.get("amount"), item.get("price"))), "line_items.price")
        or ZERO,
    )


@dataclass
class OrderRun:
    """What a batch's orders share: one read of their stored versions and refunds, and the
    writes they leave for the batch's bulk statements (events; counters recomputed once)."""

    orders: dict[str, Order]
    refunds: dict[str, dict[str, Decimal]]
    events: list[tuple[Profile | None, dict]] = field(default_factory=list)
    recount: set[int] = field(default_factory=set)
    # Orders with a stored refund booked unconverted (``_convert_early_refunds`` reads only those).
    early: set[str] = field(default_factory=set)

    @classmethod
    def load(cls, shop: Shop, external_ids: list[str]) -> OrderRun:
        """The stored orders and refund amounts of ``external_ids`` (two reads for the batch)."""
        ids = sorted(set(external_ids))
        orders = {
            o.external_id: o
            for o in db.session.scalars(
                scoped(Order, shop.id).where(Order.source == SOURCE, Order.external_id.in_(ids))
            )
        }
        refunds: dict[str, dict[str, Decimal]] = {i: {} for i in ids}
        early: set[str] = set()
        stmt = scoped(Event, shop.id, Event.external_id, Event.properties).where(
            Event.source == SOURCE,
            Event.type == "order.refunded",
            sa.or_(*[Event.external_id.startswith(f"refund:{i}:", autoescape=True) for i in ids]),
        )
        for ext, props in db.session.execute(stmt):
            order_id, refund_id = ext[len("refund:") :].rsplit(":", 1)
            if order_id in refunds:
                refunds[order_id].setdefault(refund_id, Decimal(str(props.get("amount", "0"))))
                if props.get("unconverted"):
                    early.add(order_id)
        return cls(orders, refunds, early=early)

    def finish(self) -> None:
        """Recompute the purchase counters of every buyer the batch's orders touched."""
        profiles = [db.session.get(Profile, pid) for pid in sorted(self.recount)]
        recompute_order_counters_many([p for p in profiles if p is not None])


def check_shop_money(shop: Shop, payload: dict) -> None:
    """Refuse an order whose shop money is in another currency than the shop's.

    Shopify writes ``shop_money`` in the store's currency, so a difference means the shop was set
    up here with the wrong one (``c360 shop create`` takes USD unless told): £84 was counted as
    $84, beside orders counted right. The delivery waits in the dead-letter queue, and a backfill
    line is skipped, with the fix in the reason; ``c360 dlq retry`` then counts it in the right money.

    Raises:
        BadPayload: the two currencies, and the command that sets the shop's.
    """
    code = as_dict(as_dict(payload.get("total_price_set")).get("shop_money")).get("currency_code")
    if isinstance(code, str) and code.strip() and code.strip().upper() != (shop.currency or "").upper():
        theirs = code.strip().upper()[:8]
        raise BadPayload(
            f"the order's shop money is in {theirs} but this shop is set up in {shop.currency}: set the "
            f"shop's currency (c360 shop update --domain {shop.domain} --currency {theirs}), then retry"
        )


def plan_order(shop: Shop, payload: dict, delivery: WebhookDelivery) -> Planned:
    """Parse a stored order topic: the buyer to resolve, then the order applied on the result."""
    check_order(payload)
    signal, found = buyer_signal(shop, payload, delivery)

    def after(profile: Profile | None, run: OrderRun, consents: ConsentBatch | None) -> None:
        if profile is not None:
            update_buyer(shop, profile, payload, delivery, consents)
        apply_order(shop, payload, delivery, buyer=(profile, found), run=run)

    return Planned(signal=signal, after=after, contact=True, order_ref=str(payload["id"]))


def apply_order(
    shop: Shop,
    payload: dict,
    delivery: WebhookDelivery | None = None,
    *,
    buyer: tuple[Profile | None, list] | None = None,
    run: OrderRun | None = None,
) -> Order:
    """Create or update an order from any Shopify order topic (or a backfill line).

    Args:
        buyer: the buyer already resolved and updated, with the order's identifiers
            (a batch resolves every row's signal first); resolved here when None.
        run: the batch's shared reads and deferred writes; None applies everything now.

    Returns:
        The order row, whether or not this version was newer than the stored one.
    """
    check_order(payload)
    check_shop_money(shop, payload)
    external_id = str(payload["id"])
    updated_at = optional_time(payload.get("updated_at"), "updated_at")
    if run is not None:
        order = run.orders.get(external_id)
    else:
        order = db.session.scalar(
            scoped(Order, shop.id).where(Order.source == SOURCE, Order.external_id == external_id)
        )
    stale = (
        order is not None
        and order.source_updated_at is not None
        and (updated_at is None or updated_at <= order.source_updated_at)
    )
    profile, found = buyer or _buyer(shop, payload, delivery)
    previous_profile_id = order.profile_id if order is not None else None
    # Events of this order stored before it under nobody: a guest's, or a refund that came first.
    orphans = order is not None or (bool(run.refunds.get(external_id)) if run is not None else True)
    if order is None:
        order = Order(shop_id=shop.id, source=SOURCE, external_id=external_id, refunded=ZERO)
        db.session.add(order)
        if run is not None:
            run.orders[external_id] = order
    if not stale:
        _fill_order(order, payload, shop, updated_at)
        if profile is not None:
            order.profile_id = profile.id
    if run is None:
        db.session.flush()
    owner = _owner(order, profile)
    if owner is not None and owner.id != previous_profile_id and (previous_profile_id is not None or orphans):
        _move_order_events(shop, external_id, previous_profile_id, owner, run)
    _order_events(shop, order, owner, found, delivery, run)
    rate = order_rate(payload)
    if rate is not None and (order.presentment_currency or order.currency) != order.currency:
        _convert_early_refunds(shop, external_id, rate, run)
    for refund in as_list(payload.get("refunds"), "refunds"):
        if isinstance(refund, dict) and refund.get("id") is not None and refund.get("created_at"):
            _record_refund(shop, owner, external_id, refund, delivery, run, rate)
    if run is None:
        order.refunded = _at_most_paid(order, _refunded_total(shop, external_id))
        _recount(shop, order.profile_id, previous_profile_id)
    else:
        order.refunded = _at_most_paid(order, sum(run.refunds.setdefault(external_id, {}).values(), ZERO))
        run.recount.update(p for p in (order.profile_id, previous_profile_id) if p)
    return order


def _owner(order: Order, buyer: Profile | None) -> Profile | None:
    """Whom the order's events belong to: its owner, which a stale version's buyer is not (the
    merchant reassigned the order since, or attached a customer to a guest's)."""
    if buyer is not None and buyer.id == order.profile_id:
        return buyer
    return db.session.get(Profile, order.profile_id) if order.profile_id else None


def _move_order_events(
    shop: Shop, external_id: str, previous_id: int | None, owner: Profile, run: OrderRun | None
) -> None:
    """An order that changed hands takes its events along (placed, cancelled, its refunds), as
    if the new owner had had it from the start: delivered the other way round, they would have
    been recorded on them, and the order is seen on its owner's timeline and in their last seen.
    ``previous_id`` None: the events stored under nobody (a guest's sale, a refund come first)."""
    own, refund = (f"order:{external_id}", f"order-cancelled:{external_id}"), f"refund:{external_id}:"
    mine = sa.or_(Event.external_id.in_(own), Event.external_id.startswith(refund, autoescape=True))
    moved = db.session.execute(
        sa.update(Event)
        .where(
            Event.shop_id == shop.id,
            Event.source == SOURCE,
            Event.profile_id.is_(None) if previous_id is None else Event.profile_id == previous_id,
            mine,
        )
        .values(profile_id=owner.id)
        .returning(Event.type, Event.occurred_at)
        .execution_options(synchronize_session=False)
    ).all()
    for etype, occurred_at in moved:
        if is_persons_doing(etype) and (owner.last_seen_at is None or owner.last_seen_at < occurred_at):
            owner.last_seen_at = occurred_at
    if run is not None:  # and those this batch has yet to write
        for n, (profile, event) in enumerate(run.events):
            ext = event["external_id"]
            was = None if profile is None else profile.id
            if was == previous_id and (ext in own or ext.startswith(refund)):
                run.events[n] = (owner, event)


def _order_events(
    shop: Shop, order: Order, profile: Profile | None, found: list, delivery, run: OrderRun | None
) -> None:
    """The order's timeline events: placed once, cancelled once."""
    record = _recorder(shop, run)
    delivery_id = delivery.id if delivery else None
    props = {
        "order_id": order.external_id,
        "number": order.number,
        "total": str(order.total),
        "currency": order.currency,
        "channel": order.channel,
        **({"test": True} if order.test else {}),
    }
    record(
        profile,
        type="order.placed",
        source=SOURCE,
        external_id=f"order:{order.external_id}",
        occurred_at=order.placed_at,
        channel=order.channel,
        found=found,
        properties=props,
        delivery_id=delivery_id,
    )
    if order.cancelled_at is not None:
        record(
            profile,
            type="order.cancelled",
            source=SOURCE,
            external_id=f"order-cancelled:{order.external_id}",
            occurred_at=order.cancelled_at,
            channel=order.channel,
            properties=props,
            delivery_id=delivery_id,
        )


def _recount(shop: Shop, *profile_ids: int | None) -> None:
    """Bring each touched buyer's purchase counters up to date (cheap: one profile's orders)."""
    for profile_id in {p for p in profile_ids if p}:
        profile = db.session.get(Profile, profile_id)
        if profile is not None and profile.shop_id == shop.id:
            recompute_order_counters(profile)


def _at_most_paid(order: Order, refunded: Decimal) -> Decimal:
    """An order gives back at most what was paid for it: refunds summed past its total (one in
    the customer's currency with no money sets to convert it by) would make spend negative."""
    return min(refunded, max(order.total, ZERO)) if order.total is not None else refunded


def apply_refund(shop: Shop, payload: dict, delivery: WebhookDelivery | None) -> None:
    """Record a refund and lower the order's net value (and its buyer's spend)."""
    check_refund(payload)
    order_external_id = str(payload["order_id"])
    order = db.session.scalar(
        scoped(Order, shop.id).where(Order.source == SOURCE, Order.external_id == order_external_id)
    )
    profile = db.session.get(Profile, order.profile_id) if order is not None and order.profile_id else None
    rate = order.total / order.presentment_total if order is not None and order.presentment_total else None
    _record_refund(shop, profile, order_external_id, payload, delivery, rate=rate)
    if order is None:
        return  # counted when the order itself arrives
    order.refunded = _at_most_paid(order, _refunded_total(shop, order_external_id))
    _recount(shop, order.profile_id)
