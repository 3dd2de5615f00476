"""Retrying failed deliveries from the console and ``c360 dlq retry``, and what came of it.

In embedded mode a retried delivery runs at once, so its outcome is known when the answer
is written; under RQ a worker runs it later. "Retry all" gives every failed delivery fresh
attempts in one statement, then works them oldest first: in a web request only for
``request_drain_seconds`` (past its first batch), as the in-request drain does, the rest
being left pending for the background sweep (embedded) or a shop drain job (RQ); from the
command line, all of them.
"""

from __future__ import annotations

import time

import sqlalchemy as sa
from flask import has_request_context

from app.extensions import db
from app.jobs import get_queue
from app.models import WebhookDelivery
from app.services.ingest.inbox import RETRYABLE, reset_all_for_retry
from app.services.ingest.retry_report import RetryReport
from workers.ingest import (
    REQUEST_BATCH,
    batch_size,
    enqueue_deliveries,
    process_deliveries,
    request_drain_seconds,
    retry_delivery,
)

# Failed deliveries one click of "Retry all" gives fresh attempts: one UPDATE, kept short.
RETRY_ALL_LIMIT = 10_000


def retry_one(delivery_id: int) -> RetryReport:
    """Retry one failed or dead delivery; the report says whether it ran, failed again or waits."""
    queue = get_queue()
    report = RetryReport(inline=queue.runs_inline)
    queue.check_reachable()  # Redis away: say so before any row changes, not after
    if not retry_delivery(delivery_id):
        report.not_retryable = 1
        return report
    row = db.session.get(WebhookDelivery, delivery_id)
    report.add(row.status, row.last_error)
    db.session.rollback()
    return report


def retry_all(shop_id: int | None, *, capped: bool = True) -> RetryReport:
    """Give a shop's (or, with None, every shop's) failed deliveries fresh attempts and work them.

    Args:
        capped: retry the oldest ``RETRY_ALL_LIMIT`` only (a click); the CLI retries them all.

    Returns:
        The outcome of each; ``left`` counts failed deliveries past the cap.
    """
    limit = RETRY_ALL_LIMIT if capped else None
    queue = get_queue()
    report = RetryReport(inline=queue.runs_inline)
    queue.check_reachable()  # Redis away: say so before any row changes, not after
    reset = reset_all_for_retry(shop_id, limit)
    db.session.commit()
    if limit is not None and len(reset) == limit:
        report.left = _still_failed(shop_id)
    if not queue.runs_inline:
        enqueue_deliveries(sorted({shop for _, shop in reset}))
        report.queued = len(reset)
        return report
    ids = [delivery_id for delivery_id, _ in reset]
    size, budget = batch_size(), None
    if has_request_context():  # a person waits for the answer (and gunicorn for 30 s at most)
        size, budget = min(size, REQUEST_BATCH), request_drain_seconds()
    started, done = time.monotonic(), 0
    while done < len(ids) and (budget is None or done == 0 or time.monotonic() - started < budget):
        chunk = ids[done : done + size]
        outcome = process_deliveries(chunk)
        errors = _errors([i for i in chunk if outcome[i] in ("failed", "dead")])
        for delivery_id in chunk:
            report.add(outcome[delivery_id], errors.get(delivery_id))
        done += len(chunk)
    report.queued += len(ids) - done
    return report


def _errors(delivery_ids: list[int]) -> dict[int, str | None]:
    if not delivery_ids:
        return {}
    rows = db.session.execute(
        sa.select(WebhookDelivery.id, WebhookDelivery.last_error).where(WebhookDelivery.id.in_(delivery_ids))
    )
    errors = dict(rows.all())
    db.session.rollback()
    return errors


def _still_failed(shop_id: int | None) -> int:
    stmt = sa.select(sa.func.count()).where(WebhookDelivery.status.in_(RETRYABLE))
    if shop_id is not None:
        stmt = stmt.where(WebhookDelivery.shop_id == shop_id)
    return db.session.scalar(stmt) or 0
