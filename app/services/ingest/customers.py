"""Shopify customers and marketing consent (both the consent topics and legacy inline consent).

From API version 2025-01 consent arrives on its own topics; older versions
carry ``email_marketing_consent``/``sms_marketing_consent`` inside the
customer. Both map to the consent history, where the latest
``consent_updated_at`` wins.
"""

from __future__ import annotations

from typing import Any

from app.analytics.engagement import is_persons_doing
from app.models import Profile, Shop, WebhookDelivery
from app.models.base import utcnow
from app.services.consent import OPTED_IN, OPTED_OUT, record_consent
from app.services.consent_batch import ConsentBatch
from app.services.ingest.common import (
    BadPayload,
    Planned,
    apply_planned,
    as_dict,
    currency_code,
    first,
    idents,
    optional_time,
    parse_time,
    record_event,
    refresh_search_text,
    text,
    update_details,
)
from app.services.resolution import Signal, resolve

SOURCE = "shopify"
CONSENT_FIELDS = {"email": "email_marketing_consent", "sms": "sms_marketing_consent"}


def check_customer(payload: Any) -> None:
    """Reject a body that is not a Shopify customer object."""
    if not isinstance(payload, dict) or payload.get("id") in (None, ""):
        raise BadPayload("a customer needs an id")


def check_consent(payload: Any, channel: str) -> None:
    """Reject a consent-topic body without a customer or a consent object."""
    if not isinstance(payload, dict):
        raise BadPayload("the consent update must be a JSON object")
    if first(payload.get("customer_id"), payload.get("id")) is None:
        raise BadPayload("customer_id is required")
    if not isinstance(payload.get(CONSENT_FIELDS[channel]), dict):
        raise BadPayload(f"{CONSENT_FIELDS[channel]} is required")


def check_consent_values(consent: dict, where: str) -> None:
    """What ``apply_consent`` reads of a consent object, read at the door: its state and time.

    Raises:
        BadPayload: a state that is not text, a time that is not one.
    """
    _consent_status(consent.get("state"))
    optional_time(consent.get("consent_updated_at"), f"{where}.consent_updated_at")


def check_customer_values(shop: Shop, payload: dict) -> None:
    """``check_customer`` and every value ``apply_customer`` reads (ids, contacts, times, consent)."""
    check_customer(payload)
    idents(
        shop,
        [
            (k, payload.get(f))
            for k, f in (("shopify_customer", "id"), ("email", "email"), ("phone", "phone"))
        ],
    )
    for key in ("updated_at", "created_at"):
        optional_time(payload.get(key), key)
    currency_code(payload.get("currency"), "currency")
    for field in CONSENT_FIELDS.values():
        if isinstance(payload.get(field), dict):
            check_consent_values(payload[field], field)


def check_consent_topic_values(shop: Shop, payload: dict, channel: str) -> None:
    """``check_consent`` and every value ``plan_consent_topic`` reads."""
    check_consent(payload, channel)
    contact = payload.get("email_address") if channel == "email" else payload.get("phone")
    idents(
        shop,
        [
            ("shopify_customer", first(payload.get("customer_id"), payload.get("id"))),
            ("email" if channel == "email" else "phone", contact),
        ],
    )
    check_consent_values(payload[CONSENT_FIELDS[channel]], CONSENT_FIELDS[channel])


def _consent_status(state: str | None) -> tuple[str, bool] | None:
    """Shopify's state as ``(status, explicit)``; None when it says nothing usable.

    ``subscribed`` and ``unsubscribed`` are the customer's own choices;
    ``not_subscribed`` is Shopify's default, an opt-out nobody asked for.
    """
    return {
        "subscribed": (OPTED_IN, True),
        "unsubscribed": (OPTED_OUT, True),
        "not_subscribed": (OPTED_OUT, False),
    }.get((text(state, "state", 40) or "").lower())


def apply_consent(
    profile: Profile,
    channel: str,
    consent: dict,
    delivery: WebhookDelivery | None,
    identifier: str | None,
    into: ConsentBatch | None = None,
) -> bool:
    """Append one Shopify consent state to the history; False when it says nothing usable.

    A state with no ``consent_updated_at`` is not a decision made now: every customer version
    before API 2025-01 restates its consent inline, often undated. It is kept as a restatement
    (``explicit=False``, dated at its arrival, once per state): it stands where nothing was said
    before, but never lifts an opt-out, such as an unsubscribe given to us since. Dated at its
    arrival and counted as the customer's word, an address edit re-subscribed a customer who
    had unsubscribed from everything.

    With ``into`` (an ingest batch) the record is written with the batch's others at its end.
    """
    mapped = _consent_status(consent.get("state"))
    captured_at = optional_time(consent.get("consent_updated_at"), "consent_updated_at")
    if mapped is None or (captured_at is None and mapped[1] is False):
        return False  # a default "not subscribed" with no time is not a decision
    status, explicit = mapped
    ref = f"shopify:{consent.get('state')}:{captured_at.isoformat()}" if captured_at else None
    if ref is None:
        ref, explicit = f"shopify:{consent.get('state')}:undated", False
        captured_at = (delivery.triggered_at or delivery.received_at) if delivery else utcnow()
    (into.add if into is not None else record_consent)(
        profile,
        channel,
        status,
        source="shopify",
        captured_at=captured_at,
        explicit=explicit,
        identifier=identifier,
        external_ref=ref,
    )
    return True


def apply_inline_consent(
    shop: Shop,
    profile: Profile,
    customer: dict,
    delivery: WebhookDelivery | None,
    into: ConsentBatch | None = None,
) -> None:
    """Consent carried inside a customer object (API versions before 2025-01)."""
    for channel, field in CONSENT_FIELDS.items():
        consent = customer.get(field)
        if isinstance(consent, dict):
            ident = customer.get("email") if channel == "email" else customer.get("phone")
            apply_consent(profile, channel, consent, delivery, ident, into)


def customer_details(payload: dict) -> tuple[Any, ...]:
    """``update_details``' arguments from a customer version: its time, names, address, currency."""
    return (
        optional_time(first(payload.get("updated_at"), payload.get("created_at")), "updated_at"),
        (payload.get("first_name"), payload.get("last_name")),
        payload.get("default_address"),
        currency_code(payload.get("currency"), "currency"),
        True,
    )


def apply_customer(shop: Shop, payload: dict, delivery: WebhookDelivery | None, topic: str) -> Profile | None:
    """customers/create and customers/update: identifiers, names, location, inline consent."""
    check_customer(payload)
    seen_at = parse_time(
        first(
            payload.get("updated_at"),
            payload.get("created_at"),
            delivery.received_at.isoformat() if delivery else None,
        ),
        "updated_at",
    )
    found = idents(
        shop,
        [
            ("shopify_customer", payload.get("id")),
            ("email", payload.get("email")),
            ("phone", payload.get("phone")),
        ],
    )
    etype = "customer." + topic.split("/", 1)[1].replace("create", "created").replace("update", "updated")
    evidence = {"customer": str(payload["id"])}
    profile = resolve(
        shop, found, source=SOURCE, seen_at=seen_at, evidence=evidence, sighting=is_persons_doing(etype)
    )
    if profile is not None:
        update_details(profile, *customer_details(payload))
        refresh_search_text(profile)
        apply_inline_consent(shop, profile, payload, delivery)
    record_event(
        shop,
        profile,
        type=etype,
        source=SOURCE,
        external_id=f"webhook:{delivery.external_id}" if delivery else f"customer:{payload['id']}:{seen_at}",
        occurred_at=seen_at,
        found=found,
        properties={"customer_id": str(payload["id"])},
        delivery_id=delivery.id if delivery else None,
    )
    return profile


def apply_customer_delete(shop: Shop, payload: dict, delivery: WebhookDelivery) -> None:
    """customers/delete: Shopify dropped the record; the profile and its history stay."""
    check_customer(payload)
    found = idents(shop, [("shopify_customer", payload.get("id"))])
    at = delivery.triggered_at or delivery.received_at
    evidence = {"customer": str(payload["id"])}
    profile = resolve(shop, found, source=SOURCE, seen_at=at, evidence=evidence, sighting=False)
    record_event(
        shop,
        profile,
        type="customer.deleted",
        source=SOURCE,
        external_id=f"webhook:{delivery.external_id}",
        occurred_at=at,
        found=found,
        properties={"customer_id": str(payload["id"])},
        delivery_id=delivery.id,
    )


def plan_consent_topic(shop: Shop, payload: dict, delivery: WebhookDelivery, channel: str) -> Planned:
    """Parse customers/email_marketing_consent_update or customers/marketing_consent_update (SMS)."""
    check_consent(payload, channel)
    consent = as_dict(payload.get(CONSENT_FIELDS[channel]))
    contact = payload.get("email_address") if channel == "email" else payload.get("phone")
    found = idents(
        shop,
        [
            ("shopify_customer", first(payload.get("customer_id"), payload.get("id"))),
            ("email" if channel == "email" else "phone", contact),
        ],
    )
    at = first(optional_time(consent.get("consent_updated_at")), delivery.triggered_at, delivery.received_at)

    def after(profile: Profile | None, _orders, consents: ConsentBatch | None) -> None:
        if profile is not None:
            apply_consent(profile, channel, consent, delivery, contact, consents)

    return Planned(
        signal=Signal(tuple(found), SOURCE, at, {"consent": delivery.external_id}),
        event={
            "type": f"consent.{channel}",
            "channel": channel,
            "source": SOURCE,
            "external_id": f"webhook:{delivery.external_id}",
            "occurred_at": at,
            "found": found,
            "properties": {"state": consent.get("state"), "opt_in_level": consent.get("opt_in_level")},
            "delivery_id": delivery.id,
        },
        contact=True,
        after=after,
    )


def apply_consent_topic(shop: Shop, payload: dict, delivery: WebhookDelivery, channel: str) -> None:
    """customers/email_marketing_consent_update and customers/marketing_consent_update (SMS)."""
    apply_planned(shop, plan_consent_topic(shop, payload, delivery, channel))
