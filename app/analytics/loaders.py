"""SQL → DataFrame: one bulk read per table for a whole shop, as of a moment.

Timestamps travel as epoch seconds (floats) and money as floats so a
million rows load without building a Python object per value; ``frame``
turns them back into UTC timestamps. Aggregation that would otherwise
pull every event into memory (the decayed activity sum) runs in SQL with
the weights and half-life owned by ``app.analytics.engagement``.
"""

from __future__ import annotations

import datetime as dt
import io
import math

import pandas as pd
import sqlalchemy as sa

from app.analytics.engagement import HALF_LIFE_DAYS, is_message_engagement, weight_of
from app.extensions import db
from app.models import Event, Order, Profile
from app.tenancy import scoped

SECONDS_PER_DAY = 86400.0
EVENT_STAT_COLUMNS = ("activity", "first_active_at", "last_active_at", "last_message_engaged_at")


def epoch(column, dialect: str):
    """A SQL expression for ``column`` as epoch seconds (double precision)."""
    if dialect == "sqlite":
        return (sa.func.julianday(column) - 2440587.5) * SECONDS_PER_DAY
    # date_part returns double precision; EXTRACT returns numeric since PostgreSQL 14, far slower.
    return sa.func.date_part("epoch", column, type_=sa.Float)


def _at_least(expression, floor: float, dialect: str):
    """``max(expression, floor)`` in SQL. A decay's exponent is floored: PostgreSQL raises on
    ``exp`` underflow (an event some 90 years older than ``as_of``), and e**-700 counts as 0."""
    if dialect == "sqlite":
        return sa.func.max(expression, floor)
    return sa.func.greatest(expression, floor)


def _at_most(expression, ceiling: float, dialect: str):
    """``min(expression, ceiling)`` in SQL (NULL stays NULL)."""
    if dialect == "sqlite":
        return sa.func.min(expression, ceiling)
    return sa.func.least(expression, ceiling)


def _day_number(seconds, dialect: str):
    """Whole days since 1970 of an epoch expression (SQLite's CAST truncates: epochs here are positive)."""
    if dialect == "sqlite":
        return sa.cast(seconds / SECONDS_PER_DAY, sa.Integer)
    return sa.func.floor(seconds / SECONDS_PER_DAY)


def _bulk_read_memory() -> None:
    """Let PostgreSQL hash a million groups in memory for this transaction instead of spilling."""
    if db.engine.dialect.name == "postgresql":
        db.session.execute(sa.text("SET LOCAL work_mem = '256MB'"))


def _to_float(column):
    return sa.cast(column, sa.Float)


def _read(stmt, columns: list[str], index: str) -> pd.DataFrame:
    """Run ``stmt`` into a DataFrame; on PostgreSQL through ``COPY … TO STDOUT`` (no Python row objects)."""
    if db.engine.dialect.name != "postgresql":
        return _frame(db.session.execute(stmt).all(), columns, index)
    compiled = stmt.compile(dialect=db.engine.dialect, compile_kwargs={"render_postcompile": True})
    buffer = io.BytesIO()
    raw = db.session.connection().connection.driver_connection
    with raw.cursor() as cur, cur.copy(f"COPY ({compiled}) TO STDOUT (FORMAT csv)", compiled.params) as copy:
        for block in copy:
            buffer.write(block)
    buffer.seek(0)
    if not buffer.getbuffer().nbytes:
        return _frame([], columns, index)
    return _frame(pd.read_csv(buffer, header=None, names=columns), columns, index)


def _frame(rows, columns: list[str], index: str) -> pd.DataFrame:
    frame = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame.from_records(rows, columns=columns)
    for name in columns:
        if name.endswith("_at"):
            frame[name] = pd.to_datetime(pd.to_numeric(frame[name], errors="coerce"), unit="s", utc=True)
    return frame.set_index(index)


def load_profiles(shop_id: int) -> pd.DataFrame:
    """Live profiles (not merged away, not erased) with the activity their counters know."""
    dialect = db.engine.dialect.name
    cols = {
        "id": Profile.id,
        "lifecycle_stage": Profile.lifecycle_stage,
        "lifecycle_changed_at": epoch(Profile.lifecycle_changed_at, dialect),
        "first_seen_at": epoch(Profile.first_seen_at, dialect),
        "last_seen_at": epoch(Profile.last_seen_at, dialect),
        "last_engaged_at": epoch(Profile.last_engaged_at, dialect),
    }
    stmt = scoped(Profile, shop_id, *cols.values()).where(Profile.is_live())
    return _read(stmt, list(cols), "id")


def load_order_stats(shop_id: int, as_of: dt.datetime, ahead: dt.timedelta = dt.timedelta(0)) -> pd.DataFrame:
    """Per profile: live orders placed by ``as_of``, net spend, first and last order.

    ``ahead``: also orders dated up to this far past ``as_of``, counted as placed at
    ``as_of`` (the present's run: ingest takes a till's clock running a little fast).
    """
    dialect = db.engine.dialect.name
    placed = _at_most(epoch(Order.placed_at, dialect), as_of.timestamp(), dialect)
    cols = {
        "profile_id": Order.profile_id,
        "orders": sa.func.count(),
        "spend": sa.func.sum(_to_float(Order.total - Order.refunded)),
        "first_order_at": sa.func.min(placed),
        "last_order_at": sa.func.max(placed),
        # Days with an order (UTC): a split or repeated checkout is one buying occasion.
        "occasions": sa.func.count(sa.distinct(_day_number(placed, dialect))),
    }
    _bulk_read_memory()
    stmt = (
        scoped(Order, shop_id, *cols.values())
        .where(Order.profile_id.is_not(None), Order.purchases(), Order.placed_at <= as_of + ahead)
        .group_by(Order.profile_id)
    )
    return _read(stmt, list(cols), "profile_id")


# A loose index scan: each step is one probe of ix_events_shop_type_time, not a scan of every event.
_DISTINCT_TYPES = sa.text(
    """
    WITH RECURSIVE types(type) AS (
        SELECT min(type) FROM events WHERE shop_id = :shop
        UNION ALL
        SELECT (SELECT min(e.type) FROM events e WHERE e.shop_id = :shop AND e.type > types.type)
        FROM types WHERE types.type IS NOT NULL
    )
    SELECT type FROM types WHERE type IS NOT NULL
    """
)


def event_types(shop_id: int) -> list[str]:
    """The distinct event types of one shop."""
    return list(db.session.scalars(_DISTINCT_TYPES, {"shop": shop_id}))


def load_event_stats(shop_id: int, as_of: dt.datetime, ahead: dt.timedelta = dt.timedelta(0)) -> pd.DataFrame:
    """Per profile: decayed activity ``A`` as of ``as_of`` and the first/last customer activity.

    ``ahead`` as for ``load_order_stats``: an event dated a little past ``as_of`` happened at it.
    """
    dialect = db.engine.dialect.name
    at = _at_most(epoch(Event.occurred_at, dialect), as_of.timestamp(), dialect)
    weights = {t: weight_of(t) for t in event_types(shop_id)}
    weighted = sorted(t for t, w in weights.items() if w > 0)
    messages = [t for t in weighted if is_message_engagement(t)]
    if not weighted:
        return _frame([], ["profile_id", *EVENT_STAT_COLUMNS], "profile_id")
    weight = sa.case({t: weights[t] for t in weighted}, value=Event.type, else_=0.0)
    inner = (
        scoped(
            Event,
            shop_id,
            Event.profile_id.label("pid"),
            weight.label("w"),
            at.label("t"),
            (
                sa.case((Event.type.in_(messages), at), else_=None)
                if messages
                else sa.cast(sa.null(), sa.Float)
            ).label("m"),
        )
        .where(Event.profile_id.is_not(None), Event.occurred_at <= as_of + ahead, Event.type.in_(weighted))
        .subquery()
    )
    as_of_s = as_of.timestamp()
    rate = math.log(2) / (HALF_LIFE_DAYS * SECONDS_PER_DAY)
    cols = {
        "profile_id": inner.c.pid,
        "activity": sa.func.sum(
            inner.c.w * sa.func.exp(_at_least((inner.c.t - as_of_s) * rate, -700.0, dialect))
        ),
        "first_active_at": sa.func.min(inner.c.t),
        "last_active_at": sa.func.max(inner.c.t),
        "last_message_engaged_at": sa.func.max(inner.c.m),
    }
    stmt = sa.select(*cols.values()).group_by(inner.c.pid)
    _bulk_read_memory()
    return _read(stmt, list(cols), "profile_id")
