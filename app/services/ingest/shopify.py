"""Shopify topics: which handler applies each, and the shape check the webhook view runs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from app.models import Shop, WebhookDelivery
from app.services.ingest import customers, orders
from app.services.ingest.common import BadPayload
from app.services.ingest.inbox import WAITING_TOPICS

ORDER_TOPICS = frozenset({"orders/create", "orders/updated", "orders/paid", "orders/cancelled"})
HANDLERS: dict[str, Callable[[Shop, dict, WebhookDelivery], Any]] = {
    **{t: lambda shop, body, d: orders.apply_order(shop, body, d) for t in ORDER_TOPICS},
    "refunds/create": orders.apply_refund,
    "customers/create": lambda shop, body, d: customers.apply_customer(shop, body, d, "customers/create"),
    "customers/update": lambda shop, body, d: customers.apply_customer(shop, body, d, "customers/update"),
    "customers/delete": customers.apply_customer_delete,
    "customers/email_marketing_consent_update": lambda s, b, d: customers.apply_consent_topic(
        s, b, d, "email"
    ),
    "customers/marketing_consent_update": lambda s, b, d: customers.apply_consent_topic(s, b, d, "sms"),
}
TOPICS = frozenset(HANDLERS) | WAITING_TOPICS


def check_shopify(shop: Shop, topic: str, payload: Any) -> None:
    """Reject an unknown topic or a body of the wrong shape before it is stored.

    Every value applying the topic reads is read here too (without the database), so a body
    that could only fail later (a time that is not one, an email sent as a list) gets its 400
    with the reason now, instead of a 200 and a dead letter.

    Raises:
        BadPayload: with the reason.
    """
    if topic not in TOPICS:
        raise BadPayload(f"unsupported topic {topic[:80]!r}")
    if not isinstance(payload, dict):
        raise BadPayload("a Shopify webhook body is a JSON object")
    if topic in ORDER_TOPICS:
        orders.check_order_values(shop, payload)
    elif topic == "refunds/create":
        orders.check_refund_values(shop, payload)
    elif topic in ("customers/create", "customers/update", "customers/delete"):
        customers.check_customer_values(shop, payload)
    elif topic == "customers/email_marketing_consent_update":
        customers.check_consent_topic_values(shop, payload, "email")
    elif topic == "customers/marketing_consent_update":
        customers.check_consent_topic_values(shop, payload, "sms")


def apply_shopify(shop: Shop, delivery: WebhookDelivery, payload: dict) -> None:
    """Run the topic's handler."""
    HANDLERS[delivery.topic](shop, payload, delivery)
