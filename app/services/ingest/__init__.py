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
    from app.services.ingest.batch import ChangedProfiles

    with ChangedProfiles(shop, write=False) as touched:
        _dispatch(shop, delivery)
    refresh_touched_lifecycles(shop, touched.collect())


def _dispatch(shop: Shop, delivery: WebhookDelivery) -> None:
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


def refresh_touched_lifecycles(shop: Shop, changed: dict[int, Profile]) -> None:
    """Keep the stage of every profile this signal changed current between enrichment runs:
    ``changed`` (written or pending), and those whose first or last seen moved."""
    from app.services.deferred_stamps import stamped_profiles
    from app.services.lifecycle import refresh_lifecycle
    from app.services.live_scores import refresh_all

    now = utcnow()
    changed = {**changed, **stamped_profiles(db.session)}
    touched = [p for p in changed.values() if p.shop_id == shop.id and p.merged_into_id is None]
    live = [p for p in touched if p.erased_at is None]
    for profile in live:
        refresh_lifecycle(shop, profile, now)
    refresh_all(shop, live, now)  # and the scores it moves (R, churn risk's recency)
