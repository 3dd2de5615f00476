"""Whole-shop enrichment: lifecycle, engagement score, RFM, churn risk, LTV and predictions.

Runs as a worker job (``workers.enrichment.enrich_shop``), nightly and on
demand (``c360 enrich``, the dashboard button, ``POST /api/v1/enrichment/run``).
It is one bulk read per table, one vectorised computation
(``app.analytics.enrich``) and a chunked bulk write, with progress on the
``JobRun`` row. Between runs ingest keeps stages current with
``lifecycle.refresh_lifecycle``.

Stage changes are recorded as ``lifecycle.changed`` events, except on the
shop's first full run (the backfill: history must not fire journeys for
every customer at once) and on backtests (``as_of`` in the past).

Nightly schedule: run ``c360 enrich --all`` from cron (for example
``15 3 * * * cd /srv/c360 && .venv/bin/c360 enrich --all``); with
``REDIS_URL`` set it queues one job per shop on the ``analytics`` queue.
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from typing import Any

import pandas as pd
import sqlalchemy as sa

from app.analytics import loaders
from app.analytics.churn import BAND_KEYS, BANDS
from app.analytics.enrich import enrichment_frame
from app.errors import NotFound, ValidationFailed
from app.extensions import db
from app.jobs import enqueue, safe_job_id
from app.logging import get_logger
from app.models import JobRun, RollupSnapshot, Shop
from app.models.base import EARLIEST_TIME, utcnow
from app.plans import has_capability
from app.services import enrichment_store, replenishment
from app.services.ingest.orders import FUTURE_SLACK
from app.services.lifecycle import shop_windows
from app.services.timezones import zone_or_utc
from app.tenancy import scoped

KIND = "enrichment"
CHUNK = 50_000
ACTIVE = ("queued", "running")
STALE_AFTER = dt.timedelta(hours=2)
QUEUED_STALE_AFTER = dt.timedelta(minutes=30)
# How often the minute sweep enriches each shop (``enrich_due``).
DAILY = dt.timedelta(hours=24)
# The furthest ahead of its arrival ingest dates anything (an order's ``created_at``).
AHEAD = FUTURE_SLACK
log = get_logger("enrichment")


def parse_as_of(value: str | None, timezone: str | None = None) -> dt.datetime | None:
    """Read ``--as-of`` (a date, or a date-time with or without offset) as an aware UTC moment.

    A bare date (``2026-10-31`` or ``20261031``) means the end of that day in the shop's time
    zone (``timezone``; UTC without one): a Los Angeles shop's evening order of the 31st belongs
    to its 31st. Today's date means now (its end is still to come). A date-time without an
    offset is read in UTC.
    """
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        raise ValidationFailed("as_of must be an ISO date string like 2026-01-31", field="as_of")
    zone = zone_or_utc(timezone) if timezone else dt.UTC
    try:
        try:
            day = dt.date.fromisoformat(value)
        except ValueError:
            moment = dt.datetime.fromisoformat(value)
        else:
            moment = dt.datetime.combine(day, dt.time.max, tzinfo=zone).replace(microsecond=0)
            if day == utcnow().astimezone(zone).date():
                moment = utcnow()
    except ValueError:
        raise ValidationFailed(
            f"as_of {value[:40]!r} is not an ISO date like 2026-01-31", field="as_of"
        ) from None
    except OverflowError:
        raise ValidationFailed("as_of must be 1970 or later", field="as_of") from None
    moment = moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment.astimezone(dt.UTC)
    if moment < EARLIEST_TIME:  # (a date after today is refused by create_run)
        raise ValidationFailed("as_of must be 1970 or later", field="as_of")
    return moment


def start_enrichment(shop: Shop, as_of: dt.datetime | None = None) -> JobRun:
    """Queue an enrichment of ``shop`` (once: a live run for the same date is reused).

    Returns:
        The ``JobRun`` whose id clients poll at ``GET /api/v1/jobs/{id}``.
    """
    run, fresh = create_run(shop, as_of)
    if fresh:
        as_of_iso = run.result.get("as_of")
        enqueue(
            "workers.enrichment.enrich_shop", shop.id, run.id, as_of_iso, job_id=run.id, queue="analytics"
        )
        db.session.expire_all()
    return db.session.get(JobRun, run.id)


def restage_after_settings(shop: Shop, before: dict, after: dict) -> JobRun | None:
    """Queue an enrichment when a save changed the lifecycle windows (call after the commit).

    A profile's stage changes with its own signals and nightly; new windows would otherwise
    leave every stage, the dashboard and the list filters on the old ones for up to a day.
    """
    if before.get("lifecycle") == after.get("lifecycle"):
        return None
    return start_enrichment(shop)


def create_run(shop: Shop, as_of: dt.datetime | None = None) -> tuple[JobRun, bool]:
    """Commit a queued ``JobRun`` for an enrichment; reuse a live one for the same date.

    Returns:
        The run and whether it is new (so the caller enqueues it).
    """
    if as_of is not None and as_of > utcnow():
        raise ValidationFailed("as_of cannot be in the future", field="as_of")
    as_of_iso = as_of.isoformat() if as_of else None
    now = utcnow()
    live = db.session.scalars(
        scoped(JobRun, shop.id)
        .where(
            JobRun.kind == KIND,
            JobRun.status.in_(ACTIVE),
            JobRun.created_at > now - STALE_AFTER,
            # A run still queued long after it was asked for lost its job (a worker killed): not reused.
            sa.or_(JobRun.status == "running", JobRun.created_at > now - QUEUED_STALE_AFTER),
        )
        .order_by(JobRun.created_at.desc())
    ).all()
    for run in live:
        if run.result.get("as_of") == as_of_iso:
            return run, False
    run = JobRun(
        id=safe_job_id("enrich", shop.id, uuid.uuid4().hex[:12]),
        shop_id=shop.id,
        kind=KIND,
        status="queued",
        progress=0,
        result={"as_of": as_of_iso},
    )
    db.session.add(run)
    db.session.commit()
    return run, True


def _load(shop: Shop, as_of: dt.datetime, timings: dict[str, float], *, present: bool):
    """The three bulk reads as of ``as_of``.

    The present's run also reads what ingest dated a little ahead of it (``AHEAD``: a
    till's or a browser's clock running fast) and counts it as happening now; leaving
    it out made a buyer of an hour ago a newcomer with churn risk 1.0. A backtest
    reads nothing after its date.
    """
    ahead = AHEAD if present else dt.timedelta(0)
    started = time.perf_counter()
    profiles = loaders.load_profiles(shop.id)
    if present:
        for column in ("first_seen_at", "last_seen_at", "last_engaged_at"):
            profiles[column] = profiles[column].clip(upper=pd.Timestamp(as_of))
    orders = loaders.load_order_stats(shop.id, as_of, ahead)
    timings["load_profiles_orders"] = round(time.perf_counter() - started, 3)
    started = time.perf_counter()
    events = loaders.load_event_stats(shop.id, as_of, ahead)
    timings["load_events"] = round(time.perf_counter() - started, 3)
    return profiles, orders, events


def run_enrichment(shop_id: int, job_run_id: str, as_of: dt.datetime | None = None) -> JobRun:
    """Enrich every live profile of one shop, writing progress to the ``JobRun``.

    Args:
        shop_id: the shop.
        job_run_id: the ``JobRun`` created by ``start_enrichment``.
        as_of: evaluate as of this moment (a backtest); None for now.

    Returns:
        The finished ``JobRun`` (``status`` ``done``; ``failed`` with ``error`` on an exception, re-raised).
    """
    try:
        run, shop = _start(shop_id, job_run_id)
        if run.status == "done":  # a replayed job changes nothing
            return run
        _execute(shop, run, as_of)
    except Exception as exc:
        # Also when the run could not even start (the database away): left "queued", it was handed
        # back to every new request for two hours while nothing ran.
        try:
            fail_run(job_run_id, exc)
        except Exception:  # noqa: BLE001 - the database is still away: the job's own failure stands
            log.warning("could not mark enrichment run %s failed", job_run_id, exc_info=True)
        raise
    return run


def _start(shop_id: int, job_run_id: str) -> tuple[JobRun, Shop]:
    """The run and its shop, the run marked running (a finished one is left as it is)."""
    run = db.session.get(JobRun, job_run_id)
    shop = db.session.get(Shop, shop_id)
    if run is None or shop is None or run.shop_id != shop_id:
        raise NotFound(f"job {str(job_run_id)[:40]} not found")
    if run.status != "done":
        run.status, run.started_at, run.error = "running", utcnow(), None
        db.session.commit()
    return run, shop


def fail_run(job_run_id: str, exc: BaseException) -> None:
    """Mark a run that has not finished as failed, with its error, in a fresh transaction."""
    db.session.rollback()
    run = db.session.get(JobRun, job_run_id)
    if run is not None and run.status in ACTIVE:
        run.status, run.error, run.finished_at = "failed", f"{type(exc).__name__}: {exc}"[:2000], utcnow()
        db.session.commit()


def _execute(shop: Shop, run: JobRun, as_of: dt.datetime | None) -> None:
    now = utcnow()
    moment = as_of or now
    timings: dict[str, float] = {}
    profiles, orders, events = _load(shop, moment, timings, present=as_of is None)
    run.total = len(profiles)
    db.session.commit()

    started = time.perf_counter()
    windows = shop_windows(shop)
    result = enrichment_frame(
        profiles,
        orders,
        events,
        as_of=moment,
        windows=windows,
        predictions=has_capability(shop.plan, "predictions"),
    )
    if as_of is not None:
        result = result[result["has_evidence"]]
    changed = result["lifecycle_stage"] != result["previous_stage"]
    result["lifecycle_changed_at"] = (
        profiles["lifecycle_changed_at"].reindex(result.index).where(~changed, moment)
    )
    result["enriched_at"] = now
    table = enrichment_store.prepare(result)
    timings["compute"] = round(time.perf_counter() - started, 3)

    started = time.perf_counter()

    def progress(done: int) -> None:
        run.progress = done
        db.session.commit()

    written = enrichment_store.write_all(shop.id, table, now, CHUNK, progress)
    timings["write_profiles"] = round(time.perf_counter() - started, 3)

    started = time.perf_counter()
    announce = as_of is None and shop.first_enrichment_at is not None and not _follows_backtest(shop.id, run)
    # A profile ingest touched meanwhile was not written: its own refresh recorded any change.
    changes = result.loc[changed & result.index.isin(written), ["previous_stage", "lifecycle_stage"]]
    changes.columns = ["from", "to"]
    recorded = enrichment_store.record_changes(shop.id, changes, now) if announce else 0
    _store_snapshot(shop.id, result, orders, moment, backtest=as_of is not None)
    # The intervals serve today's reorder reminders: a backtest leaves them as they are.
    products = replenishment.store_intervals(shop.id, moment) if as_of is None else None
    if as_of is None and shop.first_enrichment_at is None:
        shop.first_enrichment_at = utcnow()
    timings["write_events_snapshot"] = round(time.perf_counter() - started, 3)

    run.progress = len(table)
    run.status, run.finished_at = "done", utcnow()
    run.result = {
        "as_of": as_of.isoformat() if as_of else None,
        "profiles": len(table),
        "stage_changes": int(changed.sum()),
        "written": len(written),
        "events_recorded": recorded,
        "stages": {k: int(v) for k, v in result["lifecycle_stage"].value_counts().items()},
        "products_with_interval": products,
        "timings": timings,
    }
    db.session.commit()


def _store_snapshot(shop_id: int, result, orders, moment: dt.datetime, *, backtest: bool) -> None:
    """Keep the RFM grid and churn bands as of this run (views render stored results), and whether
    the run was a backtest. The dashboard counts churn bands live (``dashboard.churn_bands``):
    ingest rescores churn risk between runs."""
    spend = orders["spend"].reindex(result.index).fillna(0.0)
    grid: dict[str, dict[str, Any]] = {}
    scored = result.dropna(subset=["rfm_r", "rfm_f"])
    for (r, f), group in scored.groupby(["rfm_r", "rfm_f"]):
        grid[f"{int(r)}-{int(f)}"] = {
            "count": len(group),
            "revenue": round(float(spend[group.index].sum()), 2),
        }
    edges = [-float("inf")] + [b.upper for b in BANDS]
    binned = pd.cut(result["churn_risk"].dropna(), bins=edges, labels=BAND_KEYS, right=False)
    bands = {k: int(v) for k, v in binned.value_counts().items() if v}
    data = {"as_of": moment.isoformat(), "backtest": backtest, "rfm_grid": grid, "churn_bands": bands}
    snap = db.session.scalar(scoped(RollupSnapshot, shop_id).where(RollupSnapshot.kind == KIND))
    if snap is None:
        snap = RollupSnapshot(shop_id=shop_id, kind=KIND)
        db.session.add(snap)
    snap.data, snap.computed_at = data, utcnow()


def job_status(shop_id: int, job_id: str) -> dict[str, Any]:
    """``{id, kind, status, progress, total, error, …}`` of one of this shop's jobs."""
    run = db.session.scalar(scoped(JobRun, shop_id).where(JobRun.id == job_id))
    if run is None:
        raise NotFound(f"job {str(job_id)[:40]} not found")
    iso = lambda v: v.isoformat() if v else None  # noqa: E731
    return {
        "id": run.id,
        "kind": run.kind,
        "status": run.status,
        "progress": run.progress,
        "total": run.total,
        "error": run.error,
        "result": run.result,
        "created_at": iso(run.created_at),
        "started_at": iso(run.started_at),
        "finished_at": iso(run.finished_at),
    }


def shops_due(now: dt.datetime | None = None, every: dt.timedelta = DAILY) -> list[Shop]:
    """Installed shops with no enrichment of the present started in the last ``every``.

    A run that failed counts (it is tried again the next day, not every minute); a
    backtest (``as_of``) does not.
    """
    since = (now or utcnow()) - every
    due = []
    for shop in shops_to_enrich():
        recent = db.session.scalars(
            scoped(JobRun, shop.id, JobRun.result)
            .where(JobRun.kind == KIND, JobRun.created_at > since)
            .order_by(JobRun.created_at.desc())
        ).all()
        # A backtest wrote the past onto the profiles: the present is put back at the next sweep.
        if not any(result.get("as_of") is None for result in recent) or _is_backtest(recent[0]):
            due.append(shop)
    return due


def _is_backtest(result: dict) -> bool:
    return result.get("as_of") is not None


def _follows_backtest(shop_id: int, run: JobRun) -> bool:
    """Whether the run before ``run`` was a backtest: the stages it finds changed are the past's."""
    before = db.session.scalar(
        scoped(JobRun, shop_id, JobRun.result)
        .where(JobRun.kind == KIND, JobRun.id != run.id, JobRun.created_at <= run.created_at)
        .order_by(JobRun.created_at.desc())
        .limit(1)
    )
    return before is not None and _is_backtest(before)


def enrich_due(now: dt.datetime | None = None) -> int:
    """Start the daily enrichment of every shop ``shops_due``; how many were started.

    The minute sweep calls it, so lifecycle stages that move with time alone (at-risk,
    churned), RFM, churn risk and predictions stay current without a cron entry, in
    embedded mode too (unless ``C360_DAILY_ENRICHMENT=0``).
    """
    shops = shops_due(now)
    for shop in shops:
        start_enrichment(shop)
    if shops:
        log.info("daily enrichment started for %s shop(s)", len(shops))
    return len(shops)


def shops_to_enrich() -> list[Shop]:
    """Installed shops, for the nightly run."""
    return list(db.session.scalars(sa.select(Shop).where(Shop.uninstalled_at.is_(None)).order_by(Shop.id)))
