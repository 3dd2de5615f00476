"""Shop totals for dashboards and ``GET /api/v1/stats``.

Totals come from orders and profiles as they stand; erasure anonymises a
profile's personal data but keeps its order amounts, so revenue and
order counts survive an erasure unchanged.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from app.extensions import db
from app.models import Order, Profile
from app.models.profile import LIFECYCLE_STAGES
from app.services.profile_view import money
from app.tenancy import scoped


def shop_stats(shop_id: int) -> dict[str, Any]:
    """``{profiles, buyers, orders, revenue, lifecycle{stage: count}}`` for one shop."""
    live = (Profile.merged_into_id.is_(None),)
    lifecycle = dict.fromkeys(LIFECYCLE_STAGES, 0)
    stmt = (
        scoped(Profile, shop_id, Profile.lifecycle_stage, sa.func.count())
        .where(*live, Profile.erased_at.is_(None))
        .group_by(Profile.lifecycle_stage)
    )
    for stage, count in db.session.execute(stmt):
        lifecycle[stage] = count
    profiles = db.session.scalar(scoped(Profile, shop_id, sa.func.count()).where(*live)) or 0
    buyers = (
        db.session.scalar(scoped(Profile, shop_id, sa.func.count()).where(*live, Profile.order_count > 0))
        or 0
    )
    live_orders = Order.cancelled_at.is_(None)
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
    }
