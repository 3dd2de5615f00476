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


def apply_engagements(shop_id: int, counted: list[tuple[Profile, str, str, dt.datetime]]) -> None:
    """``apply_engagement`` for many ``(profile, channel, metric, at)`` in one upsert.

    Counter rows the session holds are expired afterwards, so nothing reads a stale count.
    """
    from app.services.ingest.common import dialect_insert

    if not counted:
        return
    if any(isinstance(obj, EngagementCounter) for obj in (*db.session.new, *db.session.dirty)):
        db.session.flush()  # counters the session holds (a merge's recount) go to the table first
    totals: dict[tuple[int, str, str], list] = {}
    for profile, channel, metric, at in counted:
        event_type(channel, metric)
        total = totals.setdefault((profile.id, channel, metric), [0, at])
        total[0] += 1
        total[1] = max(total[1], at)
    table = EngagementCounter.__table__
    insert = dialect_insert()(table)
    insert = insert.on_conflict_do_update(
        index_elements=["profile_id", "channel", "metric"],
        set_={
            "count": table.c.count + insert.excluded["count"],
            "last_at": sa.case(
                (
                    sa.or_(table.c.last_at.is_(None), table.c.last_at < insert.excluded["last_at"]),
                    insert.excluded["last_at"],
                ),
                else_=table.c.last_at,
            ),
        },
    )
    rows = [
        {"shop_id": shop_id, "profile_id": pid, "channel": c, "metric": m, "count": n, "last_at": at}
        for (pid, c, m), (n, at) in sorted(totals.items())
    ]
    db.session.execute(insert, rows)
    for profile, _channel, metric, at in counted:
        if metric in ACTIVE_METRICS and (profile.last_engaged_at is None or profile.last_engaged_at < at):
            profile.last_engaged_at = at
    for obj in list(db.session.identity_map.values()):
        if isinstance(obj, EngagementCounter):
            db.session.expire(obj)


def recompute_engagement_counters(profile: Profile) -> None:
    """Rebuild the profile's counters and ``last_engaged_at`` from its events."""
    db.session.execute(
        sa.delete(EngagementCounter).where(
            EngagementCounter.shop_id == profile.shop_id, EngagementCounter.profile_id == profile.id
        )
    )
    add_counters(profile, db.session.execute(totals_by_type(profile.shop_id, [profile.id])).mappings())
    db.session.flush()


def totals_by_type(shop_id, profile_ids) -> sa.Select:
    """``type``, ``count`` and ``last_at`` of these profiles' engagement events, one row per type.

    The shop and the ids may be bind parameters: a merge builds the statement once.
    """
    return (
        scoped(
            Event,
            shop_id,
            Event.type.label("type"),
            sa.func.count().label("count"),
            sa.func.max(Event.occurred_at).label("last_at"),
        )
        .where(Event.profile_id.in_(profile_ids), Event.type.in_(sorted(ENGAGEMENT_TYPES)))
        .group_by(Event.type)
    )


def add_counters(profile: Profile, totals) -> None:
    """Add counter rows from ``totals_by_type`` rows, for a profile that has none; set ``last_engaged_at``.

    A merge has already deleted both profiles' counters (it keeps them for
    undo) and read both profiles' totals with its other reads, so it needs
    neither the DELETE, nor a query, nor a flush of its own.
    """
    rows, profile.last_engaged_at = counter_rows(profile, totals)
    db.session.add_all([EngagementCounter(**row) for row in rows])


def counter_rows(profile: Profile, totals) -> tuple[list[dict], dt.datetime | None]:
    """The counter rows ``totals_by_type`` rows make for ``profile``, and its last engaged time."""
    rows, last_engaged = [], None
    for total in totals:
        channel, metric = total["type"].split(".", 1)
        rows.append(
            {
                "shop_id": profile.shop_id,
                "profile_id": profile.id,
                "channel": channel,
                "metric": metric,
                "count": total["count"],
                "last_at": total["last_at"],
            }
        )
        if metric in ACTIVE_METRICS and (last_engaged is None or total["last_at"] > last_engaged):
            last_engaged = total["last_at"]
    return rows, last_engaged
