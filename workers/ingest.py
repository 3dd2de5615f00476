"""Ingest jobs: drain a shop's inbox in batches, retry failures with backoff, dead-letter, sweep.

Accepting a request queues at most one ``drain_shop`` job per shop (``enqueue_once``);
the job claims the shop's workable rows in id order, a batch at a time
(``FOR UPDATE SKIP LOCKED``), applies each batch in one transaction with the
status change, and loops until nothing is left. Every job is idempotent: a
row already processed is never claimed again, and a crash leaves the row
pending for the sweeper.
"""

from __future__ import annotations

import datetime as dt
import os
import sys
import time
from collections.abc import Callable

import sqlalchemy as sa
from flask import current_app, has_request_context
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError

from app.config import provider_settings
from app.extensions import db
from app.jobs import enqueue, enqueue_once, get_queue, safe_job_id
from app.logging import get_logger
from app.models import Shop, WebhookDelivery
from app.models.base import utcnow
from app.services import planner_stats, shop_lock
from app.services.bulk_sql import id_in, is_postgresql
from app.services.ingest import process_delivery_row
from app.services.ingest.batch import process_batch
from app.services.ingest.common import BadPayload
from app.services.ingest.inbox import due_retries, reset_for_retry, retry_due, row_token, stuck_pending

JOB = "workers.ingest.process_delivery"
BATCH_JOB = "workers.ingest.process_deliveries"
DRAIN_JOB = "workers.ingest.drain_shop"
WORKABLE = ("pending", "failed", "processing")
DUE_SLACK = dt.timedelta(seconds=2)
RACE_RETRY_SECONDS = 1.0
# How long a "drain queued" flag may outlive a lost job; the sweeper covers the gap.
DRAIN_FLAG_SECONDS = 60
# Rows a drain inside a request (embedded mode) claims per batch: small, so the answer is quick.
REQUEST_BATCH = 100
log = get_logger("ingest")


def max_attempts() -> int:
    """Attempts before a delivery is dead-lettered."""
    return int(current_app.config.get("C360_INGEST_MAX_ATTEMPTS", 5))


def batch_size() -> int:
    """Rows a drain claims and applies per transaction."""
    return int(current_app.config.get("C360_INGEST_BATCH", 500))


def drain_seconds() -> float:
    """How long one drain job works before it hands over to a fresh one (RQ only).

    Well inside RQ's job timeout, and it lets other shops' drains take their turn.
    """
    return float(current_app.config.get("C360_INGEST_DRAIN_SECONDS", 60))


def request_drain_seconds() -> float:
    """How long a drain run inside a request (embedded mode) may go on past its first batch."""
    return float(current_app.config.get("C360_INGEST_REQUEST_SECONDS", 0.5))


def backoff_seconds(attempts: int) -> float:
    """Exponential backoff after the ``attempts``-th failure: base, 2×base, 4×base…"""
    base = float(current_app.config.get("C360_INGEST_RETRY_BASE_SECONDS", 30))
    return base * 2 ** max(attempts - 1, 0)


def enqueue_delivery(delivery_id: int, token: str, *suffix: object) -> None:
    """Queue the work for one committed delivery under a deterministic job id (retries, DLQ).

    ``ingest-<id>-<token>``: the token (the row's receipt time) keeps ids
    unique when a database is recreated and its ids start again at 1.
    """
    enqueue(JOB, delivery_id, job_id=safe_job_id("ingest", delivery_id, token, *suffix), queue="webhooks")


def drain_key(shop_id: int) -> str:
    """The ``enqueue_once`` key of a shop's drain job."""
    return f"ingest-drain-{shop_id}"


def enqueue_deliveries(shop_ids: list[int | None]) -> None:
    """Queue a drain of each shop a request stored work for, unless one is queued and not started."""
    for shop_id in dict.fromkeys(s for s in shop_ids if s is not None):
        enqueue_once(drain_key(shop_id), DRAIN_JOB, shop_id, queue="webhooks", ttl=DRAIN_FLAG_SECONDS)


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


# Python's own errors on a value (not the database's, not the network's): the same input fails alike.
DETERMINISTIC = (ValueError, TypeError, KeyError, IndexError, AttributeError, ArithmeticError)


def _mark_failed(row: WebhookDelivery, exc: Exception) -> float | None:
    """Count the failed attempt on the row; the retry delay, or None once it is dead."""
    row.attempts += 1
    row.last_error = _error_text(exc)
    if row.attempts >= max_attempts() or isinstance(exc, (BadPayload, DataError, *DETERMINISTIC)):
        # A body that is not the provider's format, a value the database refuses (too long,
        # out of range: SQLSTATE class 22), or a value our code cannot handle fails the same way
        # every time: dead-lettered at once with its reason, for ``dlq retry`` once the parser
        # (or the sender) is fixed.
        row.status, row.next_attempt_at = "dead", None
        log.error("delivery %s dead after %s attempts (%s)", row.id, row.attempts, type(exc).__name__)
        return None
    delay = RACE_RETRY_SECONDS if row.attempts == 1 and lost_a_race(exc) else backoff_seconds(row.attempts)
    row.status, row.next_attempt_at = "failed", utcnow() + dt.timedelta(seconds=delay)
    log.warning(
        "delivery %s failed (attempt %s, %s); retry in %ss", row.id, row.attempts, type(exc).__name__, delay
    )
    return delay


def _begin() -> sa.Connection:
    connection = db.session.connection()
    # IMMEDIATE on SQLite: the claim is a write, and it serialises two processes' drains of one
    # inbox (SQLite has no SKIP LOCKED) instead of letting both read the same pending rows.
    shop_lock.begin_write(connection)
    return connection


def _claim_stmt(where) -> sa.Select:
    stmt = (
        sa.select(WebhookDelivery, Shop)
        .join(Shop, Shop.id == WebhookDelivery.shop_id)
        .where(*where)
        .order_by(WebhookDelivery.id)
        .with_for_update(skip_locked=True, of=WebhookDelivery)
    )
    if is_postgresql():
        # Safe: the status change commits with the work, so a commit lost in a crash
        # leaves the row pending for the sweeper. The web's accept commit stays synchronous.
        # Set in the claim itself (only when a row is claimed): one round trip, not two.
        stmt = stmt.add_columns(sa.func.set_config("synchronous_commit", "off", True))
    return stmt


def _load_claim(stmt: sa.Select, shops: dict[int, Shop]) -> list[WebhookDelivery]:
    # The shops come with the rows (one read per batch, not two) and are kept in ``shops``.
    rows = []
    for row, shop, *_ in db.session.execute(stmt.execution_options(populate_existing=True)):
        rows.append(row)
        shops[shop.id] = shop
    return rows


def _due(now: dt.datetime) -> sa.ColumnElement[bool]:
    """Rows to work now: pending, or a failed (or abandoned) attempt whose retry time has come.

    Every claim asks this, not only a shop's drain: a job left from before a ``dlq retry``, the
    sweeper's, or another worker's redo of a batch that failed would otherwise retry a delivery
    at once, and use up its attempts in seconds instead of the backoff's minutes. ``DUE_SLACK``
    lets a retry job that a scheduler on another machine starts a little early do its work.
    """
    return sa.or_(WebhookDelivery.status == "pending", retry_due(now + DUE_SLACK))


def _claim(delivery_ids: list[int], shops: dict[int, Shop]) -> list[WebhookDelivery]:
    """Lock the given rows still needing work and due, loading their shops; rows another worker
    holds, and retries whose time has not come, are skipped."""
    connection = _begin()
    if connection.dialect.name == "postgresql":
        shop_ids = db.session.scalars(
            sa.select(WebhookDelivery.shop_id).where(WebhookDelivery.id.in_(delivery_ids)).distinct()
        ).all()
        shop_lock.hold(shop_ids, connection)
    where = (WebhookDelivery.id.in_(delivery_ids), WebhookDelivery.status.in_(WORKABLE), _due(utcnow()))
    return _load_claim(_claim_stmt(where), shops)


def _claim_next(
    shop_id: int, limit: int, shops: dict[int, Shop], before: Callable[[], None], after_id: int = 0
) -> list[WebhookDelivery]:
    """Lock the shop's next ``limit`` workable rows past ``after_id``, in id order (pending, or due)."""
    connection = _begin()
    shop_lock.hold([shop_id], connection)
    before()
    where = (
        WebhookDelivery.shop_id == shop_id,
        WebhookDelivery.id > after_id,
        WebhookDelivery.status.in_(WORKABLE),  # read off ix_deliveries_workable, in id order
        _due(utcnow()),
    )
    return _load_claim(_claim_stmt(where).limit(limit), shops)


def _apply(row: WebhookDelivery, shops: dict[int, Shop]) -> Exception | None:
    """Apply one row inside a savepoint, so that a failure spares the rest of the batch."""
    shop = shops.get(row.shop_id) or shops.setdefault(row.shop_id, db.session.get(Shop, row.shop_id))
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


def _mark_all_processed(delivery_ids: list[int]) -> None:
    """Mark a batch processed in one statement (the ORM would flush one UPDATE per row between rows)."""
    if not delivery_ids:
        return
    now = utcnow()
    db.session.execute(
        sa.update(WebhookDelivery)
        .where(id_in(WebhookDelivery.id, delivery_ids))
        .values(
            status="processed",
            processed_at=now,
            next_attempt_at=None,
            last_error=None,
            attempts=WebhookDelivery.attempts + 1,
        )
        .execution_options(synchronize_session=False)
    )
    for delivery_id in delivery_ids:
        row = db.session.identity_map.get(
            sa.inspect(WebhookDelivery).identity_key_from_primary_key((delivery_id,))
        )
        if row is not None:
            db.session.expire(row)


Claim = Callable[[dict[int, Shop]], list[WebhookDelivery]]


def _work(claim: Claim, isolate: bool) -> dict[int, str]:
    """One transaction over the claimed rows; without ``isolate`` the first failure aborts it all."""
    shops: dict[int, Shop] = {}
    rows = claim(shops)
    outcome: dict[int, str] = {}
    retries: list[tuple[int, float]] = []
    if not isolate:
        # Read before applying: a merge expires every object, and a reload costs a query per row.
        ids = [row.id for row in rows]
        by_shop: dict[int, list[WebhookDelivery]] = {}
        for row in rows:
            by_shop.setdefault(row.shop_id, []).append(row)
        for shop_id, shop_rows in by_shop.items():
            process_batch(shops[shop_id], shop_rows)
        _mark_all_processed(ids)
        outcome = dict.fromkeys(ids, "processed")
    else:
        for row in rows:
            exc = _apply(row, shops)
            if exc is None:
                outcome[row.id] = "processed"
                continue
            delay = _mark_failed(row, exc)
            outcome[row.id] = "dead" if delay is None else "failed"
            if delay is not None:
                retries.append((row.id, delay))
    db.session.commit()
    for delivery_id, delay in retries:
        get_queue().enqueue_in(delay, JOB, delivery_id, queue="webhooks")
    return outcome


def _run(claim: Claim) -> dict[int, str]:
    """Apply what ``claim`` locks: optimistically as one batch, else row by row.

    The batch runs without savepoints (they cost two round trips per row); only when
    something fails is it rolled back and re-run with a savepoint per row, and if even
    that breaks (e.g. at commit), one row per transaction.
    """
    claimed: list[int] = []

    def noting(shops: dict[int, Shop]) -> list[WebhookDelivery]:
        rows = claim(shops)
        claimed[:] = [row.id for row in rows]
        return rows

    try:
        return _work(noting, isolate=False)
    except Exception as exc:  # noqa: BLE001 - retried with savepoints, then one by one
        db.session.rollback()
        log.warning("batch of %s failed (%s); redone row by row", len(claimed), type(exc).__name__)
        if os.environ.get("C360_INGEST_DEBUG"):
            log.warning("batch failure", exc_info=exc)
        if len(claimed) == 1:
            return _record_broken_transaction(claimed[0])
        if not claimed:
            raise
    try:
        return _work(lambda shops: _claim(claimed, shops), isolate=True)
    except Exception:  # noqa: BLE001 - one by one, each failure counted in its own transaction
        db.session.rollback()
    out: dict[int, str] = {}
    for delivery_id in claimed:
        out.update(process_deliveries([delivery_id]))
    return out


def process_deliveries(delivery_ids: list[int]) -> dict[int, str]:
    """Work the given rows (retries, the sweeper, the DLQ); failures are retried with backoff.

    Returns:
        ``{id: status}``: processed, failed, dead, or ``skipped`` (done already, or
        held by another worker).
    """
    outcome = dict.fromkeys(delivery_ids, "skipped")
    outcome.update(_run(lambda shops: _claim(delivery_ids, shops)))
    return outcome


def drain_shop(shop_id: int) -> int:
    """Work a shop's inbox in id order, a batch per transaction, until nothing workable is left.

    The job clears its ``enqueue_once`` flag under the shop lock and before its first read:
    a row committed before the clear is claimed here, one committed after queues a new drain.

    A job stops after ``drain_seconds()`` and queues its continuation (as a request would:
    its flag is clear, so exactly one more drain is queued).

    Returns:
        How many rows were claimed (processed, failed or dead-lettered).
    """
    flag = [True]

    def release() -> None:
        if flag[0]:
            flag[0] = False
            get_queue().release_once(drain_key(shop_id))

    # Each claim starts past the last batch: the index scan does not wade through the rows this
    # job just processed. A row committed later with a lower id queued its own drain (the flag
    # was clear), and a failed row's retry has its own job.
    limit, total, claimed, after = batch_size(), 0, [0], [0]
    queue, started = get_queue(), time.monotonic()
    budget = drain_seconds() if not queue.runs_inline else None
    if queue.runs_inline and has_request_context():
        # Embedded mode works the inbox in the request that filled it, and the provider is waiting
        # for its answer (Shopify gives up after 5 s): a backlog is left to the following requests
        # and the sweep thread, after a batch or two.
        limit, budget = min(limit, REQUEST_BATCH), request_drain_seconds()

    def claim(shops: dict[int, Shop]) -> list[WebhookDelivery]:
        rows = _claim_next(shop_id, limit, shops, release, after[0])
        claimed[0] = len(rows)
        after[0] = max([after[0], *(row.id for row in rows)])
        return rows

    try:
        while True:
            claimed[0] = 0
            _run(claim)
            total += claimed[0]
            planner_stats.refresh_stale_now_and_then()  # a shop's tables may have grown from empty
            if claimed[0] < limit:
                db.session.rollback()
                return total
            if budget is not None and time.monotonic() - started >= budget:
                db.session.rollback()
                if not queue.runs_inline:
                    enqueue_deliveries([shop_id])
                return total
    except BaseException:
        # Failed before clearing its flag (the database away while it waited for the shop's lock):
        # the flag held back every request's drain, and the sweeper's, until it expired a minute on.
        release()
        raise


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
    """Queue again what no job is going to work: rows committed but never worked, and due retries.

    A shop with rows pending for ``stale_after_seconds`` gets a drain (``enqueue_once``:
    none if one is queued already); a drain works the shop's whole backlog in order, so a
    long backlog is neither read row by row nor queued twice. Failed rows whose retry time
    has come get one job per batch (``process_deliveries``), under ids unique to this sweep.

    Returns:
        How many deliveries the sweep found to work.
    """
    now = now or utcnow()
    stale_after = dt.timedelta(seconds=stale_after_seconds)
    bucket = int(time.time() * 1000)
    stuck: dict[int, int] = {}
    due: list[list[tuple[int, str, int]]] = []
    for shop_id in db.session.scalars(sa.select(Shop.id).order_by(Shop.id)):
        count = stuck_pending(shop_id, now, stale_after)
        if count:
            stuck[shop_id] = count
        found = due_retries(shop_id, now)
        due += [found[i : i + batch_size()] for i in range(0, len(found), batch_size())]
    db.session.rollback()
    enqueue_deliveries(list(stuck))
    for chunk in due:
        (first_id, token, attempts), ids = chunk[0], [delivery_id for delivery_id, _, _ in chunk]
        job_id = safe_job_id("ingest", first_id, token, "sweep", attempts, len(ids), bucket)
        enqueue(BATCH_JOB, ids, job_id=job_id, queue="webhooks")
    count = sum(stuck.values()) + sum(len(chunk) for chunk in due)
    if count:
        log.info("sweeper queued %s deliveries", count)
    return count


def retry_delivery(delivery_id: int) -> bool:
    """Give a failed or dead delivery fresh attempts and queue it; False when it is not retryable."""
    row = db.session.get(WebhookDelivery, delivery_id)
    if row is None or not reset_for_retry(row):
        return False
    token = row_token(row)
    db.session.commit()
    enqueue_delivery(delivery_id, token, "retry", int(time.time() * 1000))
    return True


def sweep_once() -> int:
    """The periodic sweep: due retries, and inbox rows, provider hand-overs and campaign chunks a
    crash left behind.

    Journey and time-sensitive messages whose wait is over are retried here too (under RQ
    each also has a scheduled job: the first to come sends it, the other finds it done).
    A shop not enriched for a day gets its daily enrichment, and the planner's statistics
    are refreshed where they went stale. Returns how many deliveries it queued again.
    """
    from app.services.enrichment import enrich_due
    from app.services.messaging import sweep_messages

    count = sweep_deliveries()
    sweep_messages(provider_settings())
    if current_app.config.get("C360_DAILY_ENRICHMENT", True):
        enrich_due()
    planner_stats.refresh_stale()
    return count


def sweep_job() -> int:
    """``sweep_once`` under RQ, every minute (embedded mode runs it in a thread: ``workers.embedded``).

    The next sweep is scheduled whatever this one met: a sweep that failed (the database away)
    and scheduled nothing ended the minute sweeps, and rows the outage left pending waited for
    the next worker to start.
    """
    try:
        return sweep_once()
    finally:
        schedule_sweep()


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
