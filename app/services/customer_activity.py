"""The customer page's activity sections: engagement timeline, consents, messages heard.

The timeline is aggregated in SQL (events per week by channel) and its
event list is paginated, so a profile with tens of thousands of events
renders as fast as one with ten.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from typing import Any

import sqlalchemy as sa
import sqlalchemy.orm as so

from app.analytics.loaders import epoch
from app.extensions import db
from app.models import ConsentRecord, ConsentState, Event, Message, Profile
from app.models.base import utcnow
from app.services.paging import newest_first
from app.tenancy import scoped

WEEKS = 26
EVENTS_PAGE = 20
WEEK_SECONDS = 7 * 86400


def _week_start(now: dt.datetime) -> dt.datetime:
    monday = (now - dt.timedelta(days=now.weekday())).date()
    return dt.datetime.combine(monday, dt.time(), tzinfo=dt.UTC)


def timeline_section(shop_id: int, profile: Profile, page: int = 0, now: dt.datetime | None = None):
    """Events per week by channel for the last 26 weeks, and one page of the latest events."""
    now = now or utcnow()
    start = _week_start(now) - dt.timedelta(weeks=WEEKS - 1)
    dialect = db.engine.dialect.name
    week = sa.func.floor((epoch(Event.occurred_at, dialect) - start.timestamp()) / WEEK_SECONDS)
    channel = sa.func.coalesce(Event.channel, "other")  # an API event may name no channel
    rows = db.session.execute(
        scoped(Event, shop_id, week.label("week"), channel.label("channel"), sa.func.count())
        .where(
            Event.profile_id == profile.id,
            Event.occurred_at >= start,
            Event.occurred_at <= now,
            Event.type.not_like("lifecycle.%"),
        )
        .group_by("week", "channel")
    ).all()
    labels = [(start + dt.timedelta(weeks=i)).date().isoformat() for i in range(WEEKS)]
    series: dict[str, list[int]] = {}
    for index, name, count in rows:
        series.setdefault(name, [0] * WEEKS)[int(index)] += count
    events = newest_first(Event, shop_id, profile.id, Event.occurred_at, page, EVENTS_PAGE)
    total = sum(sum(v) for v in series.values())
    return {
        "chart": {"labels": labels, "series": dict(sorted(series.items()))},
        "total": total,
        "events": events.rows,
        "page": events.number,
        "has_next": events.has_next,
    }


def consents_section(shop_id: int, profile: Profile) -> dict[str, Any]:
    """Current state per channel and the history with the exact wording agreed to."""
    states = db.session.scalars(
        scoped(ConsentState, shop_id)
        .where(ConsentState.profile_id == profile.id)
        .order_by(ConsentState.channel)
    ).all()
    records = db.session.scalars(
        scoped(ConsentRecord, shop_id)
        .where(ConsentRecord.profile_id == profile.id)
        .options(so.selectinload(ConsentRecord.text))
        .order_by(ConsentRecord.captured_at.desc(), ConsentRecord.id.desc())
        .limit(50)
    ).all()
    return {"states": states, "records": records, "globally_unsubscribed": profile.globally_unsubscribed}


def messages_section(shop_id: int, profile: Profile, zone: zoneinfo.ZoneInfo, now: dt.datetime | None = None):
    """The latest messages (sent and blocked, with reasons) and today's / this week's counts."""
    now = now or utcnow()
    local_midnight = dt.datetime.combine(now.astimezone(zone).date(), dt.time(), tzinfo=zone)
    messages = db.session.scalars(
        scoped(Message, shop_id)
        .where(Message.profile_id == profile.id)
        .order_by(Message.created_at.desc(), Message.id.desc())
        .limit(50)
    ).all()
    sent = scoped(Message, shop_id, Message.channel, sa.func.count()).where(
        Message.profile_id == profile.id, Message.status == "sent"
    )
    today = dict(
        db.session.execute(sent.where(Message.created_at >= local_midnight).group_by(Message.channel)).all()
    )
    week = db.session.execute(
        sent.where(Message.created_at > now - dt.timedelta(days=7)).group_by(Message.channel)
    ).all()
    blocked = db.session.execute(
        scoped(Message, shop_id, Message.reason, sa.func.count())
        .where(Message.profile_id == profile.id, Message.status != "sent")
        .group_by(Message.reason)
        .order_by(sa.func.count().desc())
    ).all()
    last_7d = sum(count for _, count in week)
    return {
        "messages": messages,
        "today_count": sum(today.values()),
        "today_by_channel": today,
        "last_7d_count": last_7d,
        "fatigue": min(1.0, last_7d / 10),
        "blocked_reasons": blocked,
    }
