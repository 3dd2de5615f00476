"""Profile counters rebuilt from the rows they summarise.

Ingest updates counters incrementally for speed; this module recomputes
them from orders and events. Merges, undo and repair use it, and it is
the reference the incremental path is tested against.
"""

from __future__ import annotations

from collections import Counter
from decimal import Decimal

import sqlalchemy as sa

from app.extensions import db
from app.models import Event, Order, Profile
from app.tenancy import scoped

ZERO = Decimal("0")


def acquisition_channel(order: Order) -> str:
    """Where a first order came from: UTM source, else referring host, else sales channel."""
    if order.utm_source:
        return order.utm_source
    if order.referring_site:
        host = order.referring_site.split("//", 1)[-1].split("/", 1)[0]
        if host:
            return host
    if order.channel == "marketplace":  # the marketplace's name: Shopify's source_name, or the API's source
        return order.source_name or order.source
    return "pos" if order.channel == "pos" else (order.source_name or "web")


def recompute_order_counters(profile: Profile) -> None:
    """Set every purchase counter of ``profile`` from its orders (and its store visits)."""
    orders = list(
        db.session.scalars(
            scoped(Order, profile.shop_id)
            .where(Order.profile_id == profile.id)
            .order_by(Order.placed_at, Order.id)
        )
    )
    _set_counters(profile, orders, _last_visits(profile.shop_id, [profile.id]).get(profile.id))


def _last_visits(shop_id: int, profile_ids: list[int]) -> dict[int, object]:
    """Each profile's last store visit reported on its own (``POST /events`` on channel ``pos``,
    from a footfall or booking system): a visit without a purchase is a visit too."""
    stmt = (
        scoped(Event, shop_id, Event.profile_id, sa.func.max(Event.occurred_at))
        .where(Event.profile_id.in_(profile_ids), Event.channel == "pos", Event.type.not_like("order.%"))
        .group_by(Event.profile_id)
    )
    return dict(db.session.execute(stmt).all())


def recompute_order_counters_many(profiles: list[Profile]) -> None:
    """``recompute_order_counters`` for one shop's profiles, in one read of their orders."""
    if not profiles:
        return
    by_profile: dict[int, list[Order]] = {p.id: [] for p in profiles}
    stmt = (
        scoped(Order, profiles[0].shop_id)
        .where(Order.profile_id.in_(list(by_profile)))
        .order_by(Order.placed_at, Order.id)
    )
    for order in db.session.scalars(stmt):
        by_profile[order.profile_id].append(order)
    visits = _last_visits(profiles[0].shop_id, list(by_profile))
    for profile in profiles:
        _set_counters(profile, by_profile[profile.id], visits.get(profile.id))


def _set_counters(profile: Profile, orders: list[Order], last_visit=None) -> None:
    live = [o for o in orders if o.is_purchase]
    spend = {"online": ZERO, "pos": ZERO, "marketplace": ZERO}
    count = {"online": 0, "pos": 0, "marketplace": 0}
    for order in live:
        spend[order.channel] += order.net_total
        count[order.channel] += 1
    profile.order_count = len(live)
    profile.lifetime_spend = sum(spend.values(), ZERO)
    profile.online_count, profile.online_spend = count["online"], spend["online"]
    profile.pos_count, profile.pos_spend = count["pos"], spend["pos"]
    profile.marketplace_count, profile.marketplace_spend = count["marketplace"], spend["marketplace"]
    profile.first_order_at = live[0].placed_at if live else None
    profile.last_order_at = live[-1].placed_at if live else None
    # Where they came from: their first real order (cancelled or not), never a merchant's test.
    real = [o for o in orders if not o.test]
    profile.acquisition_channel = acquisition_channel(real[0]) if real else None
    pos = [o for o in live if o.channel == "pos"]
    visits = [t for t in (pos[-1].placed_at if pos else None, last_visit) if t is not None]
    profile.pos_last_visit_at = max(visits, default=None)
    locations = Counter(o.location_id for o in pos if o.location_id)
    # Most visits wins; ties go to the most recent location.
    profile.preferred_location = (
        max(
            locations, key=lambda loc: (locations[loc], max(o.placed_at for o in pos if o.location_id == loc))
        )
        if locations
        else None
    )
