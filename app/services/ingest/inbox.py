"""The durable inbox: every accepted delivery is a ``WebhookDelivery`` row first.

Webhook, pixel and API signals all land here, are committed, and only then
are worked by ``workers.ingest.drain_shop``. The row's unique
``(shop_id, provider, external_id)`` is what makes a repeated delivery a no-op.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
import sqlalchemy.orm as so

from app.extensions import db
from app.models import Event, Shop, WebhookDelivery
from app.models.base import utcnow
from app.tenancy import MAX_ROW_ID, scoped

if TYPE_CHECKING:
    from app.services.ingest.refused import DeadLetter

# Deliveries parked for a pipeline built elsewhere (GDPR): kept, never dropped.
WAITING_TOPICS = frozenset({"customers/data_request", "customers/redact", "shop/redact", "app/uninstalled"})
RETRYABLE = ("failed", "dead")
FAILED_PAGE = 100  # failed deliveries the console shows a page


@dataclass
class Stored:
    """The outcome of storing one delivery."""

    delivery_id: int | None
    created: bool
    waiting: bool = False
    token: str = ""
    shop_id: int | None = None
    dead: bool = False  # a refused event of a batch, stored straight into the dead-letter queue

    @property
    def needs_work(self) -> bool:
        """True for a new row that a job must process."""
        return self.created and not self.waiting and not self.dead


def store_delivery(
    shop: Shop,
    provider: str,
    topic: str,
    external_id: str,
    body: bytes | dict | list,
    *,
    headers: dict[str, Any] | None = None,
    event_id: str | None = None,
    triggered_at: dt.datetime | None = None,
    api_version: str | None = None,
) -> Stored:
    """Insert one delivery unless its id was seen before (the caller commits).

    ``INSERT … ON CONFLICT DO NOTHING`` on the unique ``(shop, provider, external_id)``:
    a duplicate, even one racing in on another connection, is answered without an error.
    """
    from app.services.ingest.common import dialect_insert

    raw = body if isinstance(body, bytes) else json.dumps(body, separators=(",", ":")).encode()
    waiting = provider == "shopify" and topic in WAITING_TOPICS
    received_at = utcnow()
    values = {
        "shop_id": shop.id,
        "provider": provider,
        "topic": topic[:80],
        "external_id": fitted_id(external_id),
        "event_id": event_id[:255] if event_id else None,
        "triggered_at": triggered_at,
        "api_version": api_version[:20] if api_version else None,
        "headers": headers or {},
        "body": raw,
        "status": "waiting" if waiting else "pending",
        "attempts": 0,
        "received_at": received_at,
    }
    insert = dialect_insert()(WebhookDelivery).values(**values)
    insert = insert.on_conflict_do_nothing(index_elements=["shop_id", "provider", "external_id"])
    delivery_id = db.session.scalar(insert.returning(WebhookDelivery.id))
    if delivery_id is None:
        return Stored(None, False)
    return Stored(delivery_id, True, waiting, _token(received_at), shop.id)


ID_COLUMN = 255  # webhook_deliveries.external_id


def fitted_id(external_id: str) -> str:
    """A delivery's id as the inbox keeps it: itself, or past the column's length its head and a digest
    of the whole. Cut to the column, two long ids sharing their first 255 characters were one, and
    the second delivery was answered as a duplicate and never processed; the same id stays the same."""
    if len(external_id) <= ID_COLUMN:
        return external_id
    digest = hashlib.sha256(external_id.encode()).hexdigest()
    return f"{external_id[: ID_COLUMN - len(digest) - 1]}#{digest}"


def store_deliveries(
    shop: Shop,
    provider: str,
    items: list[tuple[str, str, Any]],
    dead: Iterable[DeadLetter] = (),
) -> list[Stored]:
    """Insert a request's deliveries ``(topic, external_id, body)`` in one statement (the caller commits).

    Same outcome as ``store_delivery`` for each item in turn (a repeated id, in the batch or
    before it, is not created again) with one round trip instead of one per item. The batch's
    ``dead`` letters (its refused events) go in the same statement as ``dead`` rows with their
    reason, never worked until an operator retries them; their ids (``refused:…``) never meet
    a valid event's. The outcomes are the items' in order, then the dead letters'.
    """
    from app.services.bulk_sql import insert_new

    if provider == "shopify":
        raise ValueError("Shopify deliveries carry headers: store them one by one")
    received_at = utcnow()
    todo = [(topic, external_id, body, None) for topic, external_id, body in items]
    todo += [(d.topic, d.external_id, d.body, d.reason) for d in dead]
    values = [
        {
            "shop_id": shop.id,
            "provider": provider,
            "topic": topic[:80],
            "external_id": fitted_id(external_id),
            "headers": {},
            "body": json.dumps(body, separators=(",", ":")).encode(),
            "status": "pending" if reason is None else "dead",
            "attempts": 0,
            "last_error": None if reason is None else reason[:2000],
            "received_at": received_at,
        }
        for topic, external_id, body, reason in todo
    ]
    unique = ("shop_id", "provider", "external_id")
    new_ids = dict(insert_new(WebhookDelivery.__table__, values, unique, ("external_id", "id")))
    token, out = _token(received_at), []
    for row in values:
        delivery_id = new_ids.pop(row["external_id"], None)
        dead_row = row["status"] == "dead"
        out.append(
            Stored(delivery_id, True, False, token, shop.id, dead_row)
            if delivery_id
            else Stored(None, False, dead=dead_row)
        )
    return out


def _token(received_at: dt.datetime) -> str:
    return str(int(received_at.timestamp() * 1_000_000))


def row_token(row: WebhookDelivery) -> str:
    """A per-row token for job ids: ids restart in a fresh database, receipt times do not."""
    return _token(row.received_at)


# Events the product writes of its own (a stage change, a merge), not of anything a client sent.
DERIVED_EVENT_TYPES = ("lifecycle.changed", "profile.merged")


def ingest_status(shop_id: int) -> dict[str, int]:
    """``{received, pending, processed, dead_letter, waiting, events}`` for one shop; ``events``
    counts those made of what was sent (a client waits for them), not derived ones."""
    rows = db.session.execute(
        scoped(WebhookDelivery, shop_id, WebhookDelivery.status, sa.func.count()).group_by(
            WebhookDelivery.status
        )
    )
    by_status = dict(rows.all())
    events = db.session.scalar(
        scoped(Event, shop_id, sa.func.count()).where(Event.type.not_in(DERIVED_EVENT_TYPES))
    )
    return {
        "received": sum(by_status.values()),
        "pending": sum(by_status.get(s, 0) for s in ("pending", "processing", "failed")),
        "processed": by_status.get("processed", 0),
        "dead_letter": by_status.get("dead", 0),
        "waiting": by_status.get("waiting", 0),
        "events": events,
    }


def failed_deliveries(shop_id: int | None = None, limit: int = 200) -> list[WebhookDelivery]:
    """Dead and failed deliveries, newest first; all shops for the operator's CLI."""
    stmt = (sa.select(WebhookDelivery) if shop_id is None else scoped(WebhookDelivery, shop_id)).where(
        WebhookDelivery.status.in_(RETRYABLE)
    )
    return list(db.session.scalars(stmt.order_by(WebhookDelivery.id.desc()).limit(limit)))


@dataclass
class FailedPage:
    """One page of a shop's failed and dead deliveries, newest first, and where it sits among them."""

    rows: list[WebhookDelivery]
    total: int
    first: int  # the position of the first row, from 1 (0 on an empty page)
    older: int | None  # the ``before`` cursor of the next (older) page, None on the last
    newer: int | None  # the ``after`` cursor of the previous (newer) page, None on the first

    @property
    def last(self) -> int:
        """The position of the last row on the page."""
        return self.first + len(self.rows) - 1 if self.rows else 0


def failed_page(
    shop_id: int, *, before: int | None = None, after: int | None = None, size: int = FAILED_PAGE
) -> FailedPage:
    """The ``size`` failed or dead deliveries just older than ``before`` (or newer than ``after``).

    Keyset by id, so a retry between two clicks moves no other row to another page. A cursor
    that leaves nothing to show (its rows were retried, or it is no id at all) reads the first page.
    """
    w = WebhookDelivery
    failed = scoped(w, shop_id).where(w.status.in_(RETRYABLE)).options(so.defer(w.body), so.defer(w.headers))
    before, after = _id_or_none(before), _id_or_none(after)
    if after is not None:
        stmt = failed.where(w.id > after).order_by(w.id).limit(size)
        rows = list(reversed(db.session.scalars(stmt).all()))
    else:
        stmt = failed.where(w.id < before) if before is not None else failed
        rows = list(db.session.scalars(stmt.order_by(w.id.desc()).limit(size)))
    if not rows and (before, after) != (None, None):
        return failed_page(shop_id, size=size)

    def count(*where) -> int:
        return db.session.scalar(scoped(w, shop_id, sa.func.count()).where(w.status.in_(RETRYABLE), *where))

    total = count()
    newer = count(w.id > rows[0].id) if rows else 0
    older = total - newer - len(rows)
    return FailedPage(
        rows,
        total,
        newer + 1 if rows else 0,
        rows[-1].id if older > 0 else None,
        rows[0].id if newer > 0 else None,
    )


def _id_or_none(value: int | None) -> int | None:
    """A cursor that can be a row id; None for one that cannot (zero, negative, past BIGINT)."""
    return value if value is not None and 0 < value <= MAX_ROW_ID else None


def reset_for_retry(delivery: WebhookDelivery) -> bool:
    """Give a failed or dead delivery a fresh set of attempts; False when it is not retryable."""
    if delivery.status not in RETRYABLE:
        return False
    delivery.status = "pending"
    delivery.attempts = 0
    delivery.next_attempt_at = None
    return True


def reset_all_for_retry(shop_id: int | None, limit: int | None = None) -> list[tuple[int, int]]:
    """Give a shop's (None: every shop's) oldest ``limit`` failed and dead deliveries fresh attempts
    in one statement, as ``reset_for_retry`` does one; the caller commits.

    Returns:
        ``(id, shop_id)`` of each, oldest first.
    """
    w = WebhookDelivery
    picked = sa.select(w.id).where(w.status.in_(RETRYABLE))
    if shop_id is not None:
        picked = picked.where(w.shop_id == shop_id)
    if limit is not None:
        picked = picked.order_by(w.id).limit(limit)
    stmt = (
        sa.update(w)
        .where(w.id.in_(picked.scalar_subquery()), w.status.in_(RETRYABLE))
        .values(status="pending", attempts=0, next_attempt_at=None)
        .returning(w.id, w.shop_id)
        .execution_options(synchronize_session=False)
    )
    return sorted(tuple(row) for row in db.session.execute(stmt))


def stuck_pending(shop_id: int, now: dt.datetime, stale_after: dt.timedelta) -> int:
    """How many of the shop's rows were committed ``stale_after`` ago and are still pending."""
    w = WebhookDelivery
    stmt = sa.select(sa.func.count()).where(
        w.shop_id == shop_id, w.status == "pending", w.received_at <= now - stale_after
    )
    return db.session.scalar(stmt) or 0


def retry_due(now: dt.datetime) -> sa.ColumnElement[bool]:
    """A failed (or abandoned) attempt whose retry time has come by ``now``."""
    w = WebhookDelivery
    return sa.and_(
        w.status.in_(("failed", "processing")), sa.or_(w.next_attempt_at.is_(None), w.next_attempt_at <= now)
    )


def due_retries(shop_id: int, now: dt.datetime) -> list[tuple[int, str, int]]:
    """``(id, token, attempts)`` of failed (or abandoned) rows whose retry time has come.

    The columns the retry jobs' ids need, not the rows: a sweep never reads the bodies.
    """
    w = WebhookDelivery
    stmt = sa.select(w.id, w.received_at, w.attempts).where(w.shop_id == shop_id, retry_due(now))
    return [(i, _token(at), attempts) for i, at, attempts in db.session.execute(stmt.order_by(w.id))]
