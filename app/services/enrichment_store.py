"""Writing enrichment results back: one bulk update by primary key, in chunks.

PostgreSQL gets the fast path (one ``UPDATE … FROM unnest(...)`` per
chunk, each column sent as a single array parameter); other databases get SQLAlchemy's bulk UPDATE by
primary key (executemany). Either way no ORM object is built per profile.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from decimal import Decimal

import numpy as np
import pandas as pd
import sqlalchemy as sa

from app.extensions import db
from app.models import Event, Profile
from app.services.lifecycle import EVENT_SOURCE, EVENT_TYPE, change_external_id
from app.tenancy import scoped

WRITERS = 2  # parallel UPDATE connections on PostgreSQL (one per core of the reference machine)
COLUMNS = (
    "lifecycle_stage",
    "lifecycle_changed_at",
    "engagement_score",
    "rfm_r",
    "rfm_f",
    "rfm_m",
    "churn_risk",
    "predicted_ltv_90d",
    "predicted_next_order_at",
    "enriched_at",
)
_PG_ARRAY_TYPES = {
    "lifecycle_stage": "text[]",
    "lifecycle_changed_at": "float8[]",
    "engagement_score": "float8[]",
    "rfm_r": "int[]",
    "rfm_f": "int[]",
    "rfm_m": "int[]",
    "churn_risk": "float8[]",
    "predicted_ltv_90d": "numeric[]",
    "predicted_next_order_at": "float8[]",
    "enriched_at": "float8[]",
}
_PG_TYPES = {
    "lifecycle_stage": "varchar(16)",
    "lifecycle_changed_at": "timestamptz",
    "engagement_score": "float8",
    "rfm_r": "int",
    "rfm_f": "int",
    "rfm_m": "int",
    "churn_risk": "float8",
    "predicted_ltv_90d": "numeric(14,2)",
    "predicted_next_order_at": "timestamptz",
    "enriched_at": "timestamptz",
}


def prepare(frame: pd.DataFrame) -> pd.DataFrame:
    """Give the result frame the column types the profiles table expects."""
    out = frame[list(COLUMNS)].copy()
    for name in ("rfm_r", "rfm_f", "rfm_m"):
        out[name] = out[name].astype("Int64")
    for name in ("lifecycle_changed_at", "predicted_next_order_at", "enriched_at"):
        out[name] = pd.to_datetime(out[name], utc=True).dt.floor("us")
    return out


def write_all(
    shop_id: int,
    table: pd.DataFrame,
    read_at: dt.datetime,
    chunk_size: int,
    on_progress: Callable[[int], None],
) -> set[int]:
    """Write every row of ``table`` (index = profile id) in chunks; return the ids written.

    A profile that ingest touched after ``read_at`` is skipped on every database:
    its counters and stage are newer than what this run computed from (the embedded
    server ingests while its sweeper thread enriches). On PostgreSQL ``WRITERS``
    connections update disjoint chunks at once (each chunk is its own transaction);
    elsewhere chunks go one by one through the session.
    ``on_progress(rows_done)`` is called after each chunk, in this thread.
    """
    chunks = [table.iloc[i : i + chunk_size] for i in range(0, len(table), chunk_size)]
    written: set[int] = set()
    done = 0
    if db.engine.dialect.name != "postgresql":
        for chunk in chunks:
            written |= _guarded_update(shop_id, chunk, read_at)
            done += len(chunk)
            on_progress(done)
        return written
    engine = db.engine  # threads have no app context: hand them the engine itself
    with ThreadPoolExecutor(max_workers=WRITERS) as pool:
        futures = {pool.submit(_unnest_update, engine, shop_id, c, read_at): len(c) for c in chunks}
        for future in as_completed(futures):
            written |= future.result()
            done += futures[future]
            on_progress(done)
    return written


_EPOCH = pd.Timestamp("1970-01-01", tz="UTC")
# Rows whose scores did not move are left alone: a nightly run rewrites only what changed
# (``enriched_at`` is when enrichment last changed the profile). Times compare to the minute.
_CHANGED = (
    "(p.lifecycle_stage, p.engagement_score, p.rfm_r, p.rfm_f, p.rfm_m, p.churn_risk, p.predicted_ltv_90d, "
    "date_trunc('minute', p.predicted_next_order_at)) IS DISTINCT FROM "
    "(t.lifecycle_stage, t.engagement_score, t.rfm_r, t.rfm_f, t.rfm_m, t.churn_risk, t.predicted_ltv_90d, "
    "date_trunc('minute', to_timestamp(t.predicted_next_order_at)))"
)


def _array(series: pd.Series) -> list:
    """A column as a Python list for a PostgreSQL array parameter (NULL where missing)."""
    if isinstance(series.dtype, pd.DatetimeTZDtype):
        series = (series - _EPOCH) / pd.Timedelta(seconds=1)
    values = series.astype(object)
    return values.where(series.notna(), None).tolist()


def _unnest_update(engine, shop_id: int, chunk: pd.DataFrame, read_at: dt.datetime) -> set[int]:
    """One ``UPDATE … FROM unnest(arrays)`` in its own transaction; each column is one array parameter."""
    arrays = [chunk.index.to_numpy(dtype="int64").tolist()] + [_array(chunk[name]) for name in COLUMNS]
    columns = ", ".join(["id", *COLUMNS])
    casts = ", ".join(["%s::bigint[]"] + [f"%s::{_PG_ARRAY_TYPES[name]}" for name in COLUMNS])
    assignments = ", ".join(
        f"{name} = to_timestamp(t.{name})" if _PG_TYPES[name] == "timestamptz" else f"{name} = t.{name}"
        for name in COLUMNS
    )
    # Column names come from COLUMNS above, never from input.
    statement = (
        f"UPDATE profiles p SET {assignments}, updated_at = to_timestamp(t.enriched_at) "  # noqa: S608
        f"FROM unnest({casts}) AS t({columns}) WHERE p.id = t.id AND p.shop_id = %s AND p.updated_at <= %s "
        f"AND {_CHANGED} RETURNING p.id"
    )
    with engine.begin() as conn, conn.connection.driver_connection.cursor() as cur:
        cur.execute(statement, (*arrays, shop_id, read_at))
        return {row[0] for row in cur.fetchall()}


def _guarded_update(shop_id: int, chunk: pd.DataFrame, read_at: dt.datetime) -> set[int]:
    """Bulk UPDATE by primary key, in the session, of the chunk's profiles untouched since ``read_at``.

    Each written row's ``updated_at`` becomes ``read_at`` (the run's start, as on PostgreSQL),
    and the UPDATE holds the write lock until the commit, so the chunk's rows still at or
    before ``read_at`` afterwards are the ones written.
    """
    ids = [int(pid) for pid in chunk.index]
    db.session.execute(
        sa.update(Profile).where(Profile.shop_id == shop_id, Profile.updated_at <= read_at),
        _records(chunk),
        # Which rows the guard skipped is only known below; loaded profiles are not refreshed
        # here (the run reads no Profile objects, and the commit expires any a caller holds).
        execution_options={"synchronize_session": None},
    )
    return set(
        db.session.scalars(
            scoped(Profile, shop_id, Profile.id).where(Profile.id.in_(ids), Profile.updated_at <= read_at)
        )
    )


def _python(value):
    if value is None or value is pd.NaT or (isinstance(value, float) and np.isnan(value)):
        return None
    if value is pd.NA:
        return None
    if isinstance(value, pd.Timestamp):
        return value.to_pydatetime()
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    return value


def _records(chunk: pd.DataFrame) -> list[dict]:
    records = []
    for pid, row in zip(chunk.index, chunk.itertuples(index=False), strict=True):
        rec = {name: _python(value) for name, value in zip(COLUMNS, row, strict=True)}
        if rec["predicted_ltv_90d"] is not None:
            rec["predicted_ltv_90d"] = Decimal(str(rec["predicted_ltv_90d"]))
        rec["id"] = int(pid)
        rec["updated_at"] = rec["enriched_at"]
        records.append(rec)
    return records


def record_changes(shop_id: int, changes: pd.DataFrame, at: dt.datetime) -> int:
    """Insert one ``lifecycle.changed`` event per row of ``changes`` (``from``/``to`` columns)."""
    if changes.empty:
        return 0
    rows = [
        {
            "shop_id": shop_id,
            "profile_id": int(pid),
            "type": EVENT_TYPE,
            "channel": None,
            "source": EVENT_SOURCE,
            "external_id": change_external_id(int(pid), new, at),
            "identifiers": {},
            "properties": {"from": old, "to": new, "at": at.isoformat()},
            "occurred_at": at,
            "received_at": at,
        }
        for pid, old, new in zip(changes.index, changes["from"], changes["to"], strict=True)
    ]
    db.session.execute(sa.insert(Event), rows)
    return len(rows)
