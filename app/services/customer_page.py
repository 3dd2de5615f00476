"""What the customer 360 page shows: the header and the identities, orders and predictions sections.

Every function reads one shop's rows through ``scoped`` and returns plain
data; the views only render it. Nothing here loads a profile's whole
history: lists are paginated and charts are aggregated in SQL.
"""

from __future__ import annotations

import datetime as dt
import math
import zoneinfo
from typing import Any

import sqlalchemy as sa

from app.analytics import churn, engagement, predictions, rfm
from app.extensions import db
from app.models import (
    ConsentState,
    Identifier,
    Membership,
    Merge,
    Message,
    Order,
    OrderLine,
    Profile,
    Shop,
    User,
)
from app.models.base import utcnow
from app.models.profile import CHANNELS
from app.plans import has_capability
from app.services import recommendations, replenishment
from app.services.lifecycle import quiet_days, shop_windows
from app.services.paging import newest_first
from app.services.profile_view import customer_zone, orders_summary, profile_document
from app.services.shop_settings import shop_timezone
from app.services.timezones import zone_or_utc
from app.tenancy import scoped

ORDERS_PAGE = 25
FATIGUE_DIVISOR = 10  # the gate's definition: messages sent in 7 days ÷ 10, capped at 1


def zone_of(doc: dict[str, Any], shop: Shop) -> zoneinfo.ZoneInfo:
    """The profile's time zone, else the shop's, else UTC."""
    return zone_or_utc(doc.get("timezone"), shop_timezone(shop))


def consent_chips(shop_id: int, profile: Profile, doc: dict[str, Any]) -> dict[str, str]:
    """Channel → ``opted_in``/``opted_out``/``unknown``, from the document when it has consents."""
    consents = doc.get("consents")
    if isinstance(consents, dict) and consents:
        return {c: (consents.get(c) or {}).get("status") or "unknown" for c in CHANNELS}
    states = dict(
        db.session.execute(
            scoped(ConsentState, shop_id, ConsentState.channel, ConsentState.status).where(
                ConsentState.profile_id == profile.id
            )
        ).all()
    )
    chips = {c: states.get(c, "unknown") for c in CHANNELS}
    if profile.globally_unsubscribed:
        chips = dict.fromkeys(CHANNELS, "opted_out")
    return chips


def fatigue_of(shop_id: int, profile_id: int, now: dt.datetime) -> float:
    """Messages sent in the last 7 days ÷ 10, capped at 1 (the gate's fatigue)."""
    sent = db.session.scalar(
        scoped(Message, shop_id, sa.func.count()).where(
            Message.profile_id == profile_id,
            Message.status == "sent",
            Message.created_at > now - dt.timedelta(days=7),
        )
    )
    return min(1.0, (sent or 0) / FATIGUE_DIVISOR)


def header(shop: Shop, profile: Profile) -> dict[str, Any]:
    """The profile document plus what the header needs: chips, fatigue, churn band, zone."""
    doc = profile_document(shop, profile)
    messaging = doc.get("messaging") or {}
    fatigue = messaging.get("fatigue")
    doc["page"] = {
        "consent_chips": consent_chips(shop.id, profile, doc),
        "fatigue": fatigue if fatigue is not None else fatigue_of(shop.id, profile.id, utcnow()),
        "churn_band": churn.band_of(doc.get("churn_risk")),
        "zone": zone_of(doc, shop),
        "erased_at": profile.erased_at,
        "enriched_at": profile.enriched_at,
        "predictions": has_capability(shop.plan, "predictions"),
        "formula": engagement.FORMULA,
        "gauge": gauge_point(doc.get("churn_risk")),
        "own_timezone": profile.timezone,
    }
    return doc


def section_context(shop: Shop, profile: Profile) -> dict[str, Any]:
    """What a lazily loaded section needs of the profile, without building the whole document."""
    doc: dict[str, Any] = {
        "id": profile.id,
        "name": profile.name,
        "timezone": customer_zone(shop, profile),
    }
    doc["orders"] = orders_summary(profile, shop)
    doc["page"] = {"zone": zone_of(doc, shop), "erased_at": profile.erased_at, "formula": engagement.FORMULA}
    return doc


def gauge_point(risk: float | None) -> tuple[str, str] | None:
    """End of the gauge's arc for ``risk`` on a half circle of radius 50 centred at (60, 60)."""
    if risk is None:
        return None
    angle = math.pi * (1 - min(max(risk, 0.0), 1.0))
    return f"{60 + 50 * math.cos(angle):.2f}", f"{60 - 50 * math.sin(angle):.2f}"


def identities_section(shop_id: int, profile: Profile) -> dict[str, Any]:
    """Identifiers and every merge this profile took part in (newest first)."""
    idents = scoped(Identifier, shop_id).where(Identifier.profile_id == profile.id)
    merges = db.session.scalars(
        scoped(Merge, shop_id)
        .where(sa.or_(Merge.winner_id == profile.id, Merge.loser_id == profile.id))
        .order_by(Merge.created_at.desc())
        .limit(50)
    ).all()
    from app.services.merges import undo_refusals

    return {
        "identifiers": db.session.scalars(idents.order_by(Identifier.kind, Identifier.value)).all(),
        "merges": merges,
        "now": utcnow(),
        "actors": actor_names(shop_id, [m.actor for m in merges]),
        "refusals": undo_refusals(db.session.get(Shop, shop_id), merges),
    }


def actor_names(shop_id: int, actors: list[str | None]) -> dict[str, str]:
    """``{"user:7": "Priya Shah"}`` for the console users among ``actors`` who are members of the shop."""
    ids = {int(a.split(":", 1)[1]) for a in actors if a and a.startswith("user:") and a[5:].isdigit()}
    if not ids:
        return {}
    rows = db.session.execute(
        sa.select(User.id, User.name, User.email)
        .join(Membership, Membership.user_id == User.id)
        .where(Membership.shop_id == shop_id, User.id.in_(sorted(ids)))
    )
    return {f"user:{uid}": name or email for uid, name, email in rows}


def orders_section(shop_id: int, profile: Profile, page: int = 0) -> dict[str, Any]:
    """One page of orders (newest first), the channel split and the top products."""
    orders = newest_first(Order, shop_id, profile.id, Order.placed_at, page, ORDERS_PAGE)
    top = db.session.execute(
        scoped(
            OrderLine,
            shop_id,
            OrderLine.product_id,
            sa.func.max(OrderLine.title),
            sa.func.sum(OrderLine.quantity),
        )
        .join(Order, Order.id == OrderLine.order_id)
        .where(Order.profile_id == profile.id, Order.shop_id == shop_id, Order.purchases())
        .group_by(OrderLine.product_id)
        .order_by(sa.func.sum(OrderLine.quantity).desc())
        .limit(5)
    ).all()
    return {
        "orders": orders.rows,
        "page": orders.number,
        "has_next": orders.has_next,
        "top_products": [{"product_id": p, "title": t, "quantity": q} for p, t, q in top],
    }


def predictions_section(shop: Shop, profile: Profile) -> dict[str, Any]:
    """Churn risk with its components and band, RFM meaning, and the plan-gated predictions."""
    windows = shop_windows(shop)
    now = utcnow()
    quiet = quiet_days(profile, now)
    parts = None
    if profile.churn_risk is not None:
        parts = churn.components_of(quiet, profile.rfm_f, profile.rfm_m, windows.churned_days)
        parts["recency"] = round(parts["recency"], 3)
    allowed = has_capability(shop.plan, "predictions")
    items = replenishment.due_items(shop, profile, now)
    next_order, last_order = profile.predicted_next_order_at, profile.last_order_at
    superseded = bool(allowed and next_order and last_order and next_order <= last_order)
    return {
        "action": recommendations.next_best_action(profile, items, now),
        "replenishment": items,
        "now": now,
        "risk": profile.churn_risk,
        "band": churn.band_of(profile.churn_risk),
        "bands": churn.BANDS,
        "components": parts,
        "weights": churn.WEIGHTS,
        "quiet_days": quiet,
        "windows": windows,
        "r_bands": rfm.R_BANDS,
        "allowed": allowed,
        "ltv": profile.predicted_ltv_90d if allowed else None,
        "next_order_at": profile.predicted_next_order_at if allowed else None,
        "overdue": bool(allowed and next_order and not superseded and next_order < now),
        # An order came after the date the last run predicted: the next run predicts again.
        "superseded": superseded,
        "buyer": (profile.order_count or 0) > 0,
        "horizon": predictions.HORIZON_DAYS,
        "enriched_at": profile.enriched_at,
    }
