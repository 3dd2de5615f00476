"""The profile document: the contract's profile shape, shared by API and page.

One function assembles it so the API (``GET /api/v1/profiles/{id}``) and
the customer page never disagree about a number.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from app.digits import whole_number
from app.extensions import db
from app.models import EngagementCounter, Identifier, Message, Profile, Shop
from app.models.profile import CHANNELS
from app.plans import has_capability
from app.services.shop_settings import shop_timezone
from app.services.timezones import resolve_zone
from app.tenancy import scoped

ENGAGEMENT_METRICS = ("sent", "delivered", "opened", "clicked", "replied", "dismissed", "bounced")


def iso(value: dt.datetime | None) -> str | None:
    """ISO 8601 with offset, or None."""
    return value.isoformat() if value else None


def money(value: Decimal | None) -> float | None:
    """Money as a JSON number with two decimals."""
    return None if value is None else float(Decimal(value).quantize(Decimal("0.01")))


def _identifiers(shop_id: int, profile_id: int) -> list[Identifier]:
    stmt = (
        scoped(Identifier, shop_id)
        .where(Identifier.profile_id == profile_id)
        .order_by(Identifier.kind, Identifier.value)
    )
    return list(db.session.scalars(stmt))


def _engagement(shop_id: int, profile: Profile) -> dict[str, Any]:
    """Engagement counters by channel; ``sent`` adds the profile's sends from the message log.

    Our own sends are recorded once, as ``Message`` rows, so they are counted
    here; the ``sent`` counter holds only sends other systems reported
    (``POST /events`` with ``push.sent``, say).
    """
    by_channel = {c: {m: 0 for m in ENGAGEMENT_METRICS} for c in CHANNELS}
    stmt = scoped(EngagementCounter, shop_id).where(EngagementCounter.profile_id == profile.id)
    for row in db.session.scalars(stmt):
        by_channel.setdefault(row.channel, {m: 0 for m in ENGAGEMENT_METRICS})[row.metric] = row.count
    sends = (
        scoped(Message, shop_id, Message.channel, sa.func.count())
        .where(Message.profile_id == profile.id, Message.status == "sent")
        .group_by(Message.channel)
    )
    for channel, count in db.session.execute(sends):
        by_channel.setdefault(channel, {m: 0 for m in ENGAGEMENT_METRICS})["sent"] += count
    score = profile.engagement_score
    return {
        "score": None if score is None else round(score, 1),
        "last_engaged_at": iso(profile.last_engaged_at),
        "by_channel": by_channel,
    }


def orders_summary(profile: Profile, shop: Shop) -> dict[str, Any]:
    """The document's ``orders`` block: counts and spend by channel, first/last order, AOV."""
    count = profile.order_count or 0
    spend = profile.lifetime_spend or Decimal("0")
    return {
        "count": count,
        "lifetime_spend": money(spend),
        "aov": money(spend / count) if count else None,
        "first_order_at": iso(profile.first_order_at),
        "last_order_at": iso(profile.last_order_at),
        "acquisition_channel": profile.acquisition_channel,
        "currency": shop.currency,
        "online": {"count": profile.online_count, "spend": money(profile.online_spend)},
        "pos": {
            "count": profile.pos_count,
            "spend": money(profile.pos_spend),
            "last_visit_at": iso(profile.pos_last_visit_at),
            "preferred_location": _location(profile.preferred_location),
        },
        "marketplace": {"count": profile.marketplace_count, "spend": money(profile.marketplace_spend)},
    }


def _location(value: str | None):
    """Shopify location ids are numbers; keep them numeric in JSON."""
    if value is None:
        return None
    number = whole_number(value)
    return value if number is None else number


def _churn_band(risk: float | None) -> str | None:
    from app.analytics.churn import band_of

    band = band_of(risk)
    return band.key if band else None


def customer_zone(shop: Shop, profile: Profile, phones: list[str] | None = None) -> str:
    """The zone the gate keeps the customer's quiet hours and calendar day in: their own, else their
    address's, else their phone's country's, else the shop's. ``phones``: read when not given."""
    if phones is None:
        phones = [i.value for i in _identifiers(shop.id, profile.id) if i.kind == "phone"]
    return resolve_zone(
        profile_timezone=profile.timezone,
        country=profile.country,
        province=profile.province,
        phones=phones,
        shop_timezone=shop_timezone(shop),
        shop_country=shop.country,
    ).zones[0]


def profile_document(shop: Shop, profile: Profile) -> dict[str, Any]:
    """Return the contract's profile shape for ``profile`` (see CONTRACT.md §3)."""
    from app.services import profile_sections

    idents = _identifiers(shop.id, profile.id)
    predictions = has_capability(shop.plan, "predictions")
    doc: dict[str, Any] = {
        "id": profile.id,
        "shop": shop.domain,
        "merged_into": profile.merged_into_id,
        "name": profile.name,
        "first_name": profile.first_name,
        "last_name": profile.last_name,
        "emails": [i.value for i in idents if i.kind == "email"],
        "phones": [i.value for i in idents if i.kind == "phone"],
        "identifiers": [
            {"kind": i.kind, "value": i.value, "source": i.source, "first_seen_at": iso(i.first_seen_at)}
            for i in idents
        ],
        "orders": orders_summary(profile, shop),
        "engagement": _engagement(shop.id, profile),
        "lifecycle_stage": profile.lifecycle_stage,
        "rfm": {"r": profile.rfm_r, "f": profile.rfm_f, "m": profile.rfm_m, "code": profile.rfm_code},
        "churn_risk": None if profile.churn_risk is None else round(profile.churn_risk, 3),
        "churn_band": _churn_band(profile.churn_risk),
        "enriched_at": iso(profile.enriched_at),
        "predicted_ltv_90d": money(profile.predicted_ltv_90d) if predictions else None,
        "predicted_next_order_at": iso(profile.predicted_next_order_at) if predictions else None,
        "globally_unsubscribed": profile.globally_unsubscribed,
        "timezone": customer_zone(shop, profile, [i.value for i in idents if i.kind == "phone"]),
        "country": profile.country,
        "first_seen_at": iso(profile.first_seen_at),
        "last_seen_at": iso(profile.last_seen_at),
        "erased": profile.erased_at is not None,
        "created_at": iso(profile.created_at),
        "updated_at": iso(profile.updated_at),
    }
    # Sections owned by other services (consents, messaging, next best action…).
    for section in profile_sections.sections():
        doc.update(section(shop, profile))
    return doc
