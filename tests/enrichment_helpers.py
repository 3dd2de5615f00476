"""Builders for profiles, orders and events used by the enrichment and page tests."""

from __future__ import annotations

import datetime as dt
import itertools
from decimal import Decimal

from app.extensions import db
from app.models import Event, Order, Profile
from app.services.counters import recompute_order_counters

NOW = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)
_seq = itertools.count(1)


def days_ago(days: float, now: dt.datetime = NOW) -> dt.datetime:
    return now - dt.timedelta(days=days)


def add_profile(
    shop_id: int,
    *,
    first_name: str | None = "Ada",
    seen_days_ago: float | None = None,
    now: dt.datetime = NOW,
    **kw,
):
    seen = days_ago(seen_days_ago, now) if seen_days_ago is not None else None
    profile = Profile(shop_id=shop_id, first_name=first_name, first_seen_at=seen, last_seen_at=seen, **kw)
    db.session.add(profile)
    db.session.flush()
    return profile


def add_order(
    profile: Profile,
    placed: dt.datetime,
    total: str = "50.00",
    *,
    channel: str = "online",
    refunded: str = "0",
    cancelled: bool = False,
    location_id: str | None = None,
    source: str = "shopify",
) -> Order:
    n = next(_seq)
    order = Order(
        shop_id=profile.shop_id,
        profile_id=profile.id,
        source=source,
        external_id=f"o{n}",
        number=f"#{1000 + n}",
        channel=channel,
        source_name="pos" if channel == "pos" else "web",
        location_id=location_id,
        placed_at=placed,
        currency="GBP",
        total=Decimal(total),
        refunded=Decimal(refunded),
        cancelled_at=placed + dt.timedelta(hours=1) if cancelled else None,
        financial_status="paid",
    )
    db.session.add(order)
    db.session.flush()
    recompute_order_counters(profile)
    return order


def add_event(
    profile: Profile, type_: str, at: dt.datetime, channel: str | None = None, source: str = "test"
) -> Event:
    event = Event(
        shop_id=profile.shop_id,
        profile_id=profile.id,
        type=type_,
        channel=channel,
        source=source,
        external_id=f"e{next(_seq)}",
        occurred_at=at,
    )
    db.session.add(event)
    return event
