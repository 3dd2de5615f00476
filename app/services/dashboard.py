"""The shop dashboard's figures: lifecycle mix, the R×F grid, churn bands, fatigue posture, onboarding.

The R×F grid comes from the snapshot the last enrichment stored (views
render stored results), dated by the moment it describes (a backtest's date
is said as such); lifecycle counts, churn bands and fatigue are live, because
ingest (``live_scores``) and the gate move them between runs, and the list's
churn filter reads the same stored risks.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa

from app.analytics.churn import BANDS
from app.extensions import db
from app.models import JobRun, Message, Profile, RollupSnapshot, Shop
from app.models.base import utcnow
from app.models.profile import LIFECYCLE_STAGES
from app.plans import has_capability
from app.services.customer_page import FATIGUE_DIVISOR
from app.services.enrichment import KIND
from app.services.shop_settings import effective_settings
from app.services.stats import shop_stats
from app.tenancy import scoped

STAGE_COLOURS = {
    "new": "#94a3b8",
    "engaged": "#0ea5e9",
    "converted": "#22c55e",
    "loyal": "#6366f1",
    "at_risk": "#f59e0b",
    "churned": "#64748b",
}
BAND_COLOURS = {"healthy": "#16a34a", "drifting": "#ca8a04", "at_risk": "#ea580c", "likely_lost": "#dc2626"}


def rfm_grid(snapshot: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows R = 5…1 of cells F = 1…5 with count, revenue and a 0–1 shade for the heat map."""
    cells = snapshot.get("rfm_grid", {})
    peak = max((c["count"] for c in cells.values()), default=0)
    rows = []
    for r in range(5, 0, -1):
        row = []
        for f in range(1, 6):
            cell = cells.get(f"{r}-{f}", {"count": 0, "revenue": 0.0})
            shade = cell["count"] / peak if peak else 0.0
            row.append(
                {"r": r, "f": f, "count": cell["count"], "revenue": cell["revenue"], "shade": round(shade, 3)}
            )
        rows.append({"r": r, "cells": row})
    return rows


def fatigue_posture(shop: Shop, live_profiles: int, now: dt.datetime) -> dict[str, Any]:
    """How much of the list is tired: the share at or above the shop's fatigue threshold."""
    threshold = float(effective_settings(shop)["fatigue_threshold"])
    sent = (
        scoped(Message, shop.id, Message.profile_id, sa.func.count().label("n"))
        .where(Message.status == "sent", Message.created_at > now - dt.timedelta(days=7))
        .group_by(Message.profile_id)
        .subquery()
    )
    counts = dict(db.session.execute(sa.select(sent.c.n, sa.func.count()).group_by(sent.c.n)).all())
    buckets = [0] * 11  # fatigue 0.0, 0.1, … 1.0
    for n, people in counts.items():
        buckets[min(n, FATIGUE_DIVISOR)] += people
    buckets[0] = max(live_profiles - sum(buckets[1:]), 0)
    tired = sum(people for i, people in enumerate(buckets) if i / FATIGUE_DIVISOR >= threshold - 1e-9)
    return {
        "threshold": threshold,
        "buckets": buckets,
        "tired": tired,
        "share": (tired / live_profiles) if live_profiles else 0.0,
    }


def onboarding(shop: Shop) -> dict[str, Any]:
    """Whether the first full enrichment (the backfill) has finished, and the latest run."""
    latest = db.session.scalar(
        scoped(JobRun, shop.id).where(JobRun.kind == KIND).order_by(JobRun.created_at.desc()).limit(1)
    )
    return {"first_enrichment_at": shop.first_enrichment_at, "latest": latest}


def churn_bands(shop_id: int) -> dict[str, int]:
    """Live profiles per churn band, from their stored risks (as the list's filter reads them)."""
    band = sa.case(
        *[(Profile.churn_risk < b.upper, b.key) for b in BANDS if b.upper != float("inf")],
        else_=BANDS[-1].key,
    )
    rows = db.session.execute(
        scoped(Profile, shop_id, band, sa.func.count())
        .where(Profile.is_live(), Profile.churn_risk.is_not(None))
        .group_by(band)
    )
    return {key: count for key, count in rows}


def _described(data: dict[str, Any], snap) -> dt.datetime | None:
    """The moment the snapshot describes: its run's ``as_of`` (a backtest's date), else when it was made."""
    if snap is None:
        return None
    try:
        return dt.datetime.fromisoformat(data["as_of"])
    except (KeyError, TypeError, ValueError):
        return snap.computed_at


def dashboard(shop: Shop) -> dict[str, Any]:
    """Everything the dashboard draws, in one dict."""
    stats = shop_stats(shop.id)
    snap = db.session.scalar(scoped(RollupSnapshot, shop.id).where(RollupSnapshot.kind == KIND))
    data = snap.data if snap else {}
    live = db.session.scalar(scoped(Profile, shop.id, sa.func.count()).where(Profile.is_live()))
    bands = churn_bands(shop.id) if snap else {}
    return {
        "stats": stats,
        "lifecycle_chart": {
            "labels": [s.replace("_", " ") for s in LIFECYCLE_STAGES],
            "values": [stats["lifecycle"].get(s, 0) for s in LIFECYCLE_STAGES],
            "colors": [STAGE_COLOURS[s] for s in LIFECYCLE_STAGES],
        },
        "grid": rfm_grid(data),
        "bands": [{"band": b, "count": bands.get(b.key, 0)} for b in BANDS],
        "bands_chart": {
            "labels": [b.label for b in BANDS],
            "values": [bands.get(b.key, 0) for b in BANDS],
            "colors": [BAND_COLOURS[b.key] for b in BANDS],
        },
        "snapshot_at": _described(data, snap),
        "scored": snap is not None,
        "backtest": bool(data.get("backtest")),
        "fatigue": fatigue_posture(shop, live or 0, utcnow()),
        "onboarding": onboarding(shop),
        "predictions": has_capability(shop.plan, "predictions"),
    }
