"""Engagement counters: sent/delivered/opened/clicked/replied/dismissed per channel.

Every increment corresponds to an ``Event`` row of type ``"<channel>.<metric>"``
(``email.opened``, ``whatsapp.replied``…), so the counters can always be
rebuilt from events — which is what makes a merge undo exact.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from app.extensions import db
from app.models import EngagementCounter, Event, Profile
from app.models.profile import CHANNELS
from app.tenancy import scoped

METRICS = ("sent", "delivered", "opened", "clicked", "replied", "dismissed", "bounced")
# Metrics that show the person paying attention (drive last_engaged_at).
ACTIVE_METRICS = frozenset({"opened", "clicked", "replied"})


def event_type(channel: str, metric: str) -> str:
    """The event type that records one engagement, e.g. ``email.opened``."""
    if channel not in CHANNELS or metric not in METRICS:
        raise ValueError(f"unknown engagement {channel}.{metric}")
    return f"{channel}.{metric}"


ENGAGEMENT_TYPES = frozenset(event_type(c, m) for c in CHANNELS for m in METRICS)


def apply_engagement(profile: Profile, channel: str, metric: str, at: dt.datetime) -> None:
    """Count one engagement on the profile (call beside adding its Event row)."""
    event_type(channel, metric)
    row = db.session.scalar(
        scoped(EngagementCounter, profile.shop_id).where(
            EngagementCounter.profile_id == profile.id,
            EngagementCounter.channel == channel,
            EngagementCounter.metric == metric,
        )
    )
    if row is None:
        row = EngagementCounter(
            shop_id=profile.shop_id, profile_id=profile.id, channel=channel, metric=metric, count=0
        )
        db.session.add(row)
    row.count += 1
    if row.last_at is None or row.last_at < at:
        row.last_at = at
    if metric in ACTIVE_METRICS and (profile.last_engaged_at is None or profile.last_engaged_at < at):
        profile.last_engaged_at = at


def recompute_engagement_counters(profile: Profile) -> None:
    """Rebuild the profile's counters and ``last_engaged_at`` from its events."""
    db.session.execute(
        sa.delete(EngagementCounter).where(
            EngagementCounter.shop_id == profile.shop_id, EngagementCounter.profile_id == profile.id
        )
    )
    stmt = (
        scoped(Event, profile.shop_id, Event.type, sa.func.count(), sa.func.max(Event.occurred_at))
        .where(Event.profile_id == profile.id, Event.type.in_(ENGAGEMENT_TYPES))
        .group_by(Event.type)
    )
    last_engaged = None
    for etype, count, last_at in db.session.execute(stmt):
        channel, metric = etype.split(".", 1)
        db.session.add(
            EngagementCounter(
                shop_id=profile.shop_id,
                profile_id=profile.id,
                channel=channel,
                metric=metric,
                count=count,
                last_at=last_at,
            )
        )
        if metric in ACTIVE_METRICS and (last_engaged is None or last_at > last_engaged):
            last_engaged = last_at
    profile.last_engaged_at = last_engaged
    db.session.flush()
