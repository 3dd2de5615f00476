"""Ingest: turn every stored delivery (webhook, pixel event, API event) into profile updates.

One module per provider family parses and applies its signals;
``process_delivery_row`` routes a ``WebhookDelivery`` to the right one.
Handlers are idempotent: every signal is an ``Event`` with a unique
``(shop, source, external_id)`` and counters move only when that event is
new, so a replayed delivery changes nothing.

Event types written here: ``web.<pixel event>``, ``order.placed``,
``order.cancelled``, ``order.refunded``, ``customer.created|updated|deleted``,
``consent.email|sms``, ``<channel>.<metric>`` engagement (``email.opened``,
``sms.replied``, ``whatsapp.delivered``…), ``sms.keyword``, ``email.spamreport``,
``email.unsubscribe``, and any type an API client sends.
"""

from __future__ import annotations

from urllib.parse import parse_qsl

from app.extensions import db
from app.models import Profile, Shop, WebhookDelivery
from app.models.base import utcnow
from app.services.ingest.common import BadPayload, load_json


def _json(delivery: WebhookDelivery):
    return load_json(delivery.body, "the stored body")


def process_delivery_row(shop: Shop, delivery: WebhookDelivery) -> None:
    """Apply one delivery to the shop's profiles (the caller owns the transaction).

    Raises:
        Exception: anything; the job records it and retries, then dead-letters.
    """
    from app.services.ingest import api_events, pixel, sendgrid, shopify, twilio, whatsapp

    provider = delivery.provider
    if provider == "shopify":
        shopify.apply_shopify(shop, delivery, _json(delivery))
    elif provider == "pixel":
        pixel.apply_pixel_event(shop, _json(delivery), delivery)
    elif provider == "sendgrid":
        sendgrid.apply_sendgrid_event(shop, _json(delivery), delivery)
    elif provider == "twilio":
        twilio.apply_twilio(shop, dict(parse_qsl(delivery.body.decode(), keep_blank_values=True)), delivery)
    elif provider == "whatsapp":
        whatsapp.apply_whatsapp(shop, delivery.topic, _json(delivery), delivery)
    elif provider == "api":
        api_events.apply_api_event(shop, _json(delivery), delivery)
    else:
        raise BadPayload(f"no handler for provider {provider!r}")
    refresh_touched_lifecycles(shop)


def refresh_touched_lifecycles(shop: Shop) -> None:
    """Keep the stage of every profile this signal changed current between enrichment runs."""
    from app.services.lifecycle import refresh_lifecycle

    now = utcnow()
    touched = [
        obj
        for obj in (*db.session.new, *db.session.dirty)
        if isinstance(obj, Profile) and obj.shop_id == shop.id and obj.merged_into_id is None
    ]
    for profile in touched:
        if profile.erased_at is None:
            refresh_lifecycle(shop, profile, now)
