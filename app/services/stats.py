"""Shop totals for dashboards and ``GET /api/v1/stats``.

Totals come from orders and profiles as they stand; erasure anonymises a
profile's personal data but keeps its order amounts, so revenue and
order counts survive an erasure unchanged.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa

from app.extensions import db
from app.models import ConsentState, Message, Order, Profile, Shop
from app.models.base import utcnow
from app.models.profile import LIFECYCLE_STAGES
from app.services.profile_view import money
from app.tenancy import scoped


def shop_stats(shop_id: int) -> dict[str, Any]:
    """``{profiles, buyers, orders, revenue, lifecycle{stage: count}, fatigue_share, coverage}``."""
    # Profile and buyer counts keep the erased (anonymous totals survive an erasure).
    not_merged = Profile.merged_into_id.is_(None)
    lifecycle = dict.fromkeys(LIFECYCLE_STAGES, 0)
    stmt = (
        scoped(Profile, shop_id, Profile.lifecycle_stage, sa.func.count())
        .where(Profile.is_live())
        .group_by(Profile.lifecycle_stage)
    )
    for stage, count in db.session.execute(stmt):
        lifecycle[stage] = count
    profiles = db.session.scalar(scoped(Profile, shop_id, sa.func.count()).where(not_merged)) or 0
    bought = scoped(Profile, shop_id, sa.func.count()).where(not_merged, Profile.order_count > 0)
    buyers = db.session.scalar(bought) or 0
    live_orders = Order.purchases()
    orders, revenue = db.session.execute(
        scoped(
            Order, shop_id, sa.func.count(), sa.func.coalesce(sa.func.sum(Order.total - Order.refunded), 0)
        ).where(live_orders)
    ).one()
    return {
        "profiles": profiles,
        "buyers": buyers,
        "orders": orders,
        "revenue": money(revenue),
        "lifecycle": lifecycle,
        **messaging_stats(shop_id),
    }


def _share(part: int, whole: int) -> float:
    return round(part / whole, 4) if whole else 0.0


def messaging_stats(shop_id: int, now: dt.datetime | None = None) -> dict[str, Any]:
    """``fatigue_share`` (live profiles at fatigue ≥ threshold) and ``coverage`` per channel."""
    from app.services.gate import CHANNELS, FATIGUE_WINDOW
    from app.services.gate_facts import load_policy

    now = now or utcnow()
    live = Profile.is_live()
    total = db.session.scalar(scoped(Profile, shop_id, sa.func.count()).where(live)) or 0
    threshold_count = load_policy(db.session.get(Shop, shop_id)).fatigue_block_count
    tired = (
        scoped(Message, shop_id, Message.profile_id)
        .where(Message.status == "sent", Message.created_at > now - FATIGUE_WINDOW)
        .group_by(Message.profile_id)
        .having(sa.func.count() >= threshold_count)
        .subquery()
    )
    fatigued = db.session.scalar(
        scoped(Profile, shop_id, sa.func.count()).where(live, Profile.id.in_(sa.select(tired.c.profile_id)))
    )
    opted = dict.fromkeys(CHANNELS, 0)
    stmt = (
        scoped(ConsentState, shop_id, ConsentState.channel, sa.func.count())
        .join(Profile, Profile.id == ConsentState.profile_id)
        .where(live, ConsentState.status == "opted_in", Profile.globally_unsubscribed.is_(False))
        .group_by(ConsentState.channel)
    )
    for channel, count in db.session.execute(stmt):
        opted[channel] = count
    return {
        "fatigue_share": _share(fatigued or 0, total),
        "coverage": {c: _share(n, total) for c, n in opted.items()},
    }
