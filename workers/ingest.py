"""Ingest jobs: work one inbox row, retry it with backoff, dead-letter it, sweep the inbox.

``process_delivery`` is idempotent: it reloads the row, exits unless the
row still needs work, and applies the delivery in one transaction with
the status change, so a crash leaves the row pending for the sweeper.
"""

from __future__ import annotations

import datetime as dt
import sys
import time

import sqlalchemy as sa
from flask import current_app
from sqlalchemy.exc import DBAPIError, IntegrityError

from app.extensions import db
from app.jobs import enqueue, get_queue, safe_job_id
from app.logging import get_logger
from app.models import Shop, WebhookDelivery
from app.models.base import utcnow
from app.services.ingest import process_delivery_row
from app.services.ingest.inbox import due_for_sweep, reset_for_retry, row_token

JOB = "workers.ingest.process_delivery"
BATCH_JOB = "workers.ingest.process_deliveries"
WORKABLE = ("pending", "failed", "processing")
RACE_RETRY_SECONDS = 1.0
log = get_logger("ingest")


def max_attempts() -> int:
    """Attempts before a delivery is dead-lettered."""
    return int(current_app.config.get("C360_INGEST_MAX_ATTEMPTS", 5))


def backoff_seconds(attempts: int) -> float:
    """Exponential backoff after the ``attempts``-th failure: base, 2×base, 4×base…"""
    base = float(current_app.config.get("C360_INGEST_RETRY_BASE_SECONDS", 30))
    return base * 2 ** max(attempts - 1, 0)


def enqueue_delivery(delivery_id: int, token: str, *suffix: object) -> None:
    """Queue the work for a committed delivery under a deterministic job id.

    ``ingest-<id>-<token>``: the token (the row's receipt time) keeps ids
    unique when a database is recreated and its ids start again at 1.
    """
    enqueue(JOB, delivery_id, job_id=safe_job_id("ingest", delivery_id, token, *suffix), queue="webhooks")


def enqueue_deliveries(pending: list[tuple[int, str]]) -> None:
    """Queue the rows one request brought (a pixel batch, a SendGrid batch) as one job."""
    if len(pending) == 1:
        enqueue_delivery(*pending[0])
    elif pending:
        (first_id, token), ids = pending[0], [delivery_id for delivery_id, _ in pending]
        job_id = safe_job_id("ingest", first_id, token, "batch", len(ids))
        enqueue(BATCH_JOB, ids, job_id=job_id, queue="webhooks")


def lost_a_race(exc: Exception) -> bool:
    """A unique key another worker committed first (two workers creating one new identifier).

    Retrying at once finds the other worker's row; the normal backoff would hold the
    event back for half a minute for nothing.
    """
    return isinstance(exc, IntegrityError) and type(exc.orig).__name__ == "UniqueViolation"


def _error_text(exc: Exception) -> str:
    """The error for the dead-letter queue; a database error's first line only (no row values)."""
    if isinstance(exc, DBAPIError) and exc.orig is not None:
        detail = (str(exc.orig).splitlines() or [""])[0]
        return f"{type(exc).__name__} ({type(exc.orig).__name__}): {detail}"[:2000]
    return f"{type(exc).__name__}: {exc}"[:2000]


def _mark_failed(row: WebhookDelivery, exc: Exception) -> float | None:
    """Count the failed attempt on the row; the retry delay, or None once it is dead."""
    row.attempts += 1
    row.last_error = _error_text(exc)
    if row.attempts >= max_attempts():
        row.status, row.next_attempt_at = "dead", None
        log.error("delivery %s dead after %s attempts (%s)", row.id, row.attempts, type(exc).__name__)
        return None
    delay = RACE_RETRY_SECONDS if row.attempts == 1 and lost_a_race(exc) else backoff_seconds(row.attempts)
    row.status, row.next_attempt_at = "failed", utcnow() + dt.timedelta(seconds=delay)
    log.warning(
        "delivery %s failed (attempt %s, %s); retry in %ss", row.id, row.attempts, type(exc).__name__, delay
    )
    return delay


def _claim(delivery_ids: list[int], shops: dict[int, Shop]) -> list[WebhookDelivery]:
    """Lock the rows still needing work, loading their shops; rows another worker holds are skipped."""
    connection = db.session.connection()
    if connection.dialect.name == "sqlite" and not connection.connection.dbapi_connection.in_transaction:
        # pysqlite begins lazily; without a real BEGIN each savepoint release would commit on its own.
        connection.exec_driver_sql("BEGIN")
    stmt = (
        sa.select(WebhookDelivery, Shop)
        .join(Shop, Shop.id == WebhookDelivery.shop_id)
        .where(WebhookDelivery.id.in_(delivery_ids), WebhookDelivery.status.in_(WORKABLE))
        .order_by(WebhookDelivery.id)
        .with_for_update(skip_locked=True, of=WebhookDelivery)
    )
    if connection.dialect.name == "postgresql":
        # Safe: the status change commits with the work, so a commit lost in a crash
        # leaves the row pending for the sweeper. The web's accept commit stays synchronous.
        # Set in the claim itself (only when a row is claimed): one round trip, not two.
        stmt = stmt.add_columns(sa.func.set_config("synchronous_commit", "off", True))
    # The shops come with the rows (one read per job, not two) and are kept in ``shops`` for ``_apply``.
    rows = []
    for row, shop, *_ in db.session.execute(stmt.execution_options(populate_existing=True)):
        rows.append(row)
        shops[shop.id] = shop
    return rows


def _apply(row: WebhookDelivery, shops: dict[int, Shop], isolate: bool) -> Exception | None:
    """Apply one row; with ``isolate`` inside a savepoint so a failure spares the rest of the batch."""
    shop = shops.get(row.shop_id) or shops.setdefault(row.shop_id, db.session.get(Shop, row.shop_id))
    if not isolate:
        # Marked processed by the caller once the batch is through: one UPDATE for the lot.
        process_delivery_row(shop, row)
        return None
    try:
        with db.session.begin_nested():
            process_delivery_row(shop, row)
            _mark_processed(row)
    except Exception as exc:  # noqa: BLE001 - every failure is retried, then dead-lettered
        return exc
    return None


def _mark_processed(row: WebhookDelivery) -> None:
    row.status, row.processed_at, row.next_attempt_at, row.last_error = "processed", utcnow(), None, None
    row.attempts += 1


def _mark_all_processed(rows: list[WebhookDelivery]) -> None:
    """Mark a batch processed in one statement (the ORM would flush one UPDATE per row between rows)."""
    if not rows:
        return
    now = utcnow()
    db.session.execute(
        sa.update(WebhookDelivery)
        .where(WebhookDelivery.id.in_([row.id for row in rows]))
        .values(
            status="processed",
            processed_at=now,
            next_attempt_at=None,
            last_error=None,
            attempts=WebhookDelivery.attempts + 1,
        )
        .execution_options(synchronize_session=False)
    )
    for row in rows:
        db.session.expire(row)


def _work(delivery_ids: list[int], isolate: bool) -> dict[int, str]:
    """One transaction over the rows; without ``isolate`` the first failure aborts it all."""
    outcome = dict.fromkeys(delivery_ids, "skipped")
    retries: list[tuple[int, float]] = []
    shops: dict[int, Shop] = {}
    rows = _claim(delivery_ids, shops)
    for row in rows:
        exc = _apply(row, shops, isolate)
        if exc is None:
            outcome[row.id] = "processed"
            continue
        delay = _mark_failed(row, exc)
        outcome[row.id] = "dead" if delay is None else "failed"
        if delay is not None:
            retries.append((row.id, delay))
    if not isolate:
        _mark_all_processed(rows)
    db.session.commit()
    for delivery_id, delay in retries:
        get_queue().enqueue_in(delay, JOB, delivery_id, queue="webhooks")
    return outcome


def process_deliveries(delivery_ids: list[int]) -> dict[int, str]:
    """Work rows in one transaction; failures are counted and retried with backoff.

    Optimistic: the batch runs without savepoints (they cost two round trips per row);
    only when something fails is it rolled back and re-run with a savepoint per row.

    Returns:
        ``{id: status}``: processed, failed, dead, or ``skipped`` (done already, or
        held by another worker).
    """
    if len(delivery_ids) == 1:
        try:
            return _work(delivery_ids, isolate=False)
        except Exception:  # noqa: BLE001 - counted in a fresh transaction
            db.session.rollback()
            return _record_broken_transaction(delivery_ids[0])
    for isolate in (False, True):
        try:
            return _work(delivery_ids, isolate=isolate)
        except Exception:  # noqa: BLE001 - retried with savepoints, then one by one
            db.session.rollback()
    return {i: process_deliveries([i])[i] for i in delivery_ids}


def _record_broken_transaction(delivery_id: int) -> dict[int, str]:
    """Count a failure that broke the whole transaction (e.g. at commit) in a fresh one."""
    exc = sys.exc_info()[1]
    row = db.session.get(WebhookDelivery, delivery_id)
    if row is None or row.status not in WORKABLE:
        db.session.rollback()
        return {delivery_id: "skipped"}
    delay = _mark_failed(row, exc)
    db.session.commit()
    if delay is not None:
        get_queue().enqueue_in(delay, JOB, delivery_id, queue="webhooks")
    return {delivery_id: "dead" if delay is None else "failed"}


def process_delivery(delivery_id: int) -> str:
    """Apply one inbox row; on error schedule a retry or dead-letter it. Returns the outcome."""
    outcome = process_deliveries([delivery_id])[delivery_id]
    if outcome == "skipped":
        row = db.session.get(WebhookDelivery, delivery_id)
        outcome = row.status if row is not None else "skipped"
        db.session.rollback()
    return outcome


def sweep_deliveries(now: dt.datetime | None = None, stale_after_seconds: float = 60) -> int:
    """Re-enqueue rows committed but never worked, and failed rows whose retry time has come."""
    now = now or utcnow()
    bucket = int(time.time() * 1000)
    due = []
    for shop_id in db.session.scalars(sa.select(Shop.id).order_by(Shop.id)):
        rows = due_for_sweep(shop_id, now, dt.timedelta(seconds=stale_after_seconds))
        due += [(row.id, row_token(row), row.attempts) for row in rows]
    db.session.rollback()
    for delivery_id, token, attempts in due:
        enqueue_delivery(delivery_id, token, "sweep", attempts, bucket)
    if due:
        log.info("sweeper re-enqueued %s deliveries", len(due))
    return len(due)


def retry_delivery(delivery_id: int) -> bool:
    """Give a failed or dead delivery fresh attempts and queue it; False when it is not retryable."""
    row = db.session.get(WebhookDelivery, delivery_id)
    if row is None or not reset_for_retry(row):
        return False
    token = row_token(row)
    db.session.commit()
    enqueue_delivery(delivery_id, token, "retry", int(time.time() * 1000))
    return True


def sweep_job() -> int:
    """The periodic sweep under RQ: sweep, then schedule the next run a minute on."""
    count = sweep_deliveries()
    schedule_sweep()
    return count


def schedule_sweep(delay_seconds: int = 60) -> None:
    """Schedule ``sweep_job`` once per minute slot across all workers (RQ only)."""
    queue = get_queue()
    if not hasattr(queue, "queue_names"):
        return
    from rq.exceptions import DuplicateJobError

    slot = int(time.time() // 60) + 1
    try:
        queue.queue("default").enqueue_in(
            dt.timedelta(seconds=delay_seconds),
            "workers.ingest.sweep_job",
            job_id=safe_job_id(current_app.config["C360_QUEUE_PREFIX"], "ingest-sweep", slot),
            unique=True,
        )
    except DuplicateJobError:
        pass
