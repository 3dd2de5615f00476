"""Replenishment: which products a customer is due to buy again, and when.

Enrichment measures each product's repurchase interval over the shop's
repeat buyers (``app.analytics.replenishment``) and ``store_intervals``
rewrites the shop's ``product_intervals``. ``due_items`` answers a profile's
list on demand from its own orders, so an order placed a minute ago moves
its due date at once:

* due at = the customer's last purchase of the product + the product's interval;
* soonest first, at most ``MAX_ITEMS``;
* a product more than one interval overdue is left out: the habit has lapsed
  (they buy it elsewhere now, or no longer need it), and a reminder would be noise.

A prediction, so plans without the ``predictions`` capability get None (the
profile's ``replenishment`` is null, never a guess).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa

from app.analytics.replenishment import product_intervals
from app.extensions import db
from app.models import Order, OrderLine, ProductInterval, Profile, Shop
from app.models.base import utcnow
from app.plans import has_capability
from app.tenancy import scoped

MAX_ITEMS = 10
# How soon a due date makes a reminder the next best action.
REMIND_WITHIN = dt.timedelta(days=7)


def store_intervals(shop_id: int, as_of: dt.datetime) -> int:
    """Measure every product's interval from the shop's orders placed by ``as_of`` and replace
    the shop's rows with them; returns how many products have one."""
    intervals = product_intervals(shop_id, as_of)
    db.session.execute(sa.delete(ProductInterval).where(ProductInterval.shop_id == shop_id))
    now = utcnow()
    rows = [
        {
            "shop_id": shop_id,
            "product_id": row.product_id,
            "title": None if not isinstance(row.title, str) else row.title[:255],
            "median_days": float(row.median_days),
            "gaps": int(row.gaps),
            "buyers": int(row.buyers),
            "computed_at": now,
        }
        for row in intervals.itertuples(index=False)
    ]
    if rows:
        db.session.execute(sa.insert(ProductInterval), rows)
    return len(rows)


def due_items(shop: Shop, profile: Profile, now: dt.datetime | None = None) -> list[dict[str, Any]] | None:
    """The products ``profile`` is due to buy again, soonest first; None without ``predictions``."""
    if not has_capability(shop.plan, "predictions"):
        return None
    now = now or utcnow()
    last = (
        scoped(Order, shop.id, OrderLine.product_id, sa.func.max(Order.placed_at).label("last"))
        .join(OrderLine, OrderLine.order_id == Order.id)
        .where(Order.profile_id == profile.id, Order.purchases(), OrderLine.product_id.is_not(None))
        .group_by(OrderLine.product_id)
        .subquery()
    )
    stmt = (
        scoped(ProductInterval, shop.id, ProductInterval.product_id, ProductInterval.title)
        .add_columns(ProductInterval.median_days, last.c.last)
        .join(last, last.c.product_id == ProductInterval.product_id)
    )
    items = []
    for product_id, title, days, bought_at in db.session.execute(stmt):
        interval = dt.timedelta(days=days)
        due_at = bought_at + interval
        if due_at + interval >= now:
            items.append(
                {"product_id": product_id, "title": title, "due_at": due_at, "last_bought_at": bought_at}
            )
    items.sort(key=lambda item: (item["due_at"], item["product_id"]))
    return items[:MAX_ITEMS]


def reminder(items: list[dict[str, Any]] | None, now: dt.datetime | None = None) -> dict[str, Any] | None:
    """The first item due within ``REMIND_WITHIN`` (or overdue), if any: worth a reminder now."""
    horizon = (now or utcnow()) + REMIND_WITHIN
    return next((item for item in items or () if item["due_at"] <= horizon), None)
