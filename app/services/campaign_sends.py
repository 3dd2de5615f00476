"""Sending a campaign: the audience cut into chunks, each chunk a job, spread over the workers.

One process gates and writes a chunk of 5,000 profiles in about a third of a
second, most of it the database's work; a campaign to 100,000 is twenty
chunks, and every ``c360 worker`` takes one at a time, so adding workers
adds throughput. Chunks are disjoint and each locks its profiles in id order,
so two chunks never wait for each other, and a single send to a customer
waits at most for one chunk's commit.

Each chunk is a row holding its profile ids. Its job marks it done in the same
transaction as its messages: a job run twice (RQ after a crash, or the sweeper
while the first job still runs) finds the chunk done and writes nothing, and a
chunk whose job Redis lost is queued again by the sweeper. A chunk that fails
``MAX_ATTEMPTS`` times is marked failed with its error; the rest of the send
goes on, and ``retry_failed`` (the Messages screen, ``c360 messages retry-chunks``)
gives the failed chunks fresh attempts once the cause is fixed.

Every message of a send carries the send's moment, whenever its chunk runs, so
one send is judged as one moment (its day for the caps, its hour for quiet
hours). Unless the chunk runs late: more than ``LATE_AFTER`` after the send
was made (its job was lost in an outage and the sweeper queued it again, or
a failed chunk was retried), it is judged and stamped at the send's moment
plus its delay. Its messages go out now, so the gate must judge now: an SMS
campaign made at 14:00 whose chunk runs at 23:00 waits for quiet hours to end.
Embedded mode (no Redis) runs the chunks in this process, in order.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from app import jobs
from app.errors import ValidationFailed
from app.extensions import db
from app.models import CampaignChunk, CampaignSend, Profile, Shop
from app.models.base import utcnow
from app.services import gate_facts, messaging_bulk
from app.services.bulk_sql import id_in
from app.services.messaging import validate_request
from app.services.messaging_bulk import CHUNK, BulkResult
from app.tenancy import get_scoped_or_raise

CHUNK_JOB = "workers.messaging.send_campaign_chunk"
MAX_ATTEMPTS = 5
# A pending chunk older than this has lost its job (or its job is still running: a second
# run then waits for the first to commit and finds the chunk done).
STALE_AFTER = dt.timedelta(minutes=2)
# A chunk running this long after its send was made is judged when it runs (see the module).
LATE_AFTER = dt.timedelta(minutes=5)


@dataclass(frozen=True)
class SendProgress:
    """Where a campaign send stands, summed over its chunks."""

    send_id: int
    campaign_id: str | None
    channel: str
    send_at: dt.datetime
    audience: int
    chunks: int
    done: int
    failed_chunks: int
    result: BulkResult

    @property
    def finished(self) -> bool:
        """Every chunk is done or has failed for good."""
        return self.done + self.failed_chunks == self.chunks


def live_audience(shop_id: int) -> list[int]:
    """Every live profile of the shop (not merged away, not erased): the audience until segments exist."""
    stmt = sa.select(Profile.id).where(Profile.shop_id == shop_id, Profile.is_live())
    return sorted(db.session.scalars(stmt))


def start_send(
    shop: Shop,
    profile_ids: Iterable[int],
    channel: str,
    *,
    campaign_id: str | None = None,
    source: str = "campaign",
    now: dt.datetime | None = None,
    chunk: int = CHUNK,
) -> CampaignSend:
    """Record a send and its chunks, commit, and queue one job per chunk.

    Raises:
        ValidationFailed: an unknown channel or source, an empty audience, a chunk size below 1.
    """
    validate_request(channel, source)
    ids = audience_of(shop.id, set(profile_ids))
    if not ids:
        raise ValidationFailed("the audience names no customer of this shop", field="profile_ids")
    if chunk < 1:
        raise ValidationFailed("chunk must be at least 1", field="chunk")
    send = CampaignSend(
        shop_id=shop.id,
        campaign_id=campaign_id,
        channel=channel,
        source=source,
        send_at=now or utcnow(),
        audience=len(ids),
    )
    db.session.add(send)
    db.session.flush()
    chunks = [
        CampaignChunk(shop_id=shop.id, send_id=send.id, position=i, profile_ids=ids[start : start + chunk])
        for i, start in enumerate(range(0, len(ids), chunk))
    ]
    db.session.add_all(chunks)
    db.session.flush()
    # Read before the commit expires them: afterwards each would be reloaded, profile ids and all.
    keys = [(row.id, row.created_at) for row in chunks]
    db.session.commit()
    for chunk_id, created_at in keys:
        _enqueue(chunk_id, created_at, "first")
    return send


def audience_of(shop_id: int, profile_ids: set[int]) -> list[int]:
    """The shop's live profiles ``profile_ids`` name, each once: a merged-away id counts as its
    survivor, and an id of no profile of this shop (or an erased one) is left out: the audience
    counts the people the send can reach, so its sent and blocked add up to it."""
    live: set[int] = set()
    todo = sorted(profile_ids)
    for _step in range(20):  # merge chains are short
        if not todo:
            break
        rows = [
            row
            for start in range(0, len(todo), 10_000)  # SQLite's limit on a statement's parameters
            for row in db.session.execute(
                sa.select(Profile.id, Profile.merged_into_id, Profile.erased_at).where(
                    Profile.shop_id == shop_id, id_in(Profile.id, todo[start : start + 10_000])
                )
            )
        ]
        live.update(pid for pid, into, erased in rows if into is None and erased is None)
        todo = sorted({into for _pid, into, _erased in rows if into is not None} - live)
    return sorted(live)


def _enqueue(chunk_id: int, created_at: dt.datetime, attempt: object) -> None:
    # The creation time keeps job ids unique when a database is recreated and its ids start again.
    token = int(created_at.timestamp() * 1_000_000)
    jobs.enqueue(CHUNK_JOB, chunk_id, job_id=jobs.safe_job_id("campaign-chunk", chunk_id, token, attempt))


def _claim(chunk_id: int) -> bool:
    """Take the chunk for this transaction if it is still pending.

    An UPDATE, not a read: it row-locks the chunk on PostgreSQL (a second job waits,
    then finds it done) and takes the write lock on SQLite.
    """
    claimed = db.session.execute(
        sa.update(CampaignChunk)
        .where(CampaignChunk.id == chunk_id, CampaignChunk.status == "pending")
        .values(attempts=CampaignChunk.attempts + 1)
        .execution_options(synchronize_session=False)
    )
    return claimed.rowcount == 1


def run_chunk(chunk_id: int, config: Mapping[str, Any] | None = None) -> BulkResult | None:
    """Gate and write one chunk and mark it done, in one transaction; None when it was not pending.

    On an error the chunk's attempt and error are recorded (no row values) and the error
    re-raised; after ``MAX_ATTEMPTS`` the chunk is failed for good.
    """
    try:
        if not _claim(chunk_id):
            db.session.rollback()
            return None
        chunk = db.session.get(CampaignChunk, chunk_id, populate_existing=True)
        send = db.session.get(CampaignSend, chunk.send_id)
        shop = db.session.get(Shop, chunk.shop_id)
        bulk = messaging_bulk.prepare(
            shop,
            send.channel,
            source=send.source,
            campaign_id=send.campaign_id,
            now=send.send_at + lateness(send.created_at),
            config=config,
        )
        # send_chunk leaves out whoever was merged away since the audience was chosen.
        ids = chunk.profile_ids
        result = messaging_bulk.send_chunk(shop, ids, bulk, gate_facts.load_policy(shop))
        chunk.status, chunk.done_at = "done", utcnow()
        chunk.sent, chunk.blocked, chunk.failed = result.sent, result.blocked, result.failed
        chunk.reasons = dict(result.reasons)
        db.session.commit()
    except Exception as exc:
        db.session.rollback()
        _record_failure(chunk_id, exc)
        raise
    messaging_bulk.deliver_committed(bulk, ids, result)
    return result


def lateness(made_at: dt.datetime, now: dt.datetime | None = None) -> dt.timedelta:
    """How late a chunk of a send made at ``made_at`` runs now: zero within ``LATE_AFTER``."""
    late = (now or utcnow()) - made_at
    return late if late > LATE_AFTER else dt.timedelta(0)


def retry_failed(shop: Shop, send_id: int) -> int:
    """Give the send's failed chunks fresh attempts and queue them; returns how many.

    Raises:
        NotFound: no such send in this shop.
    """
    send = get_scoped_or_raise(CampaignSend, shop.id, send_id, "campaign send")
    c = CampaignChunk
    failed = db.session.execute(
        sa.select(c.id, c.created_at).where(c.shop_id == shop.id, c.send_id == send.id, c.status == "failed")
    ).all()
    if failed:
        db.session.execute(
            sa.update(c)
            .where(c.id.in_([chunk_id for chunk_id, _ in failed]), c.status == "failed")
            .values(status="pending", attempts=0, last_error=None)
            .execution_options(synchronize_session=False)
        )
    db.session.commit()
    stamp = int(utcnow().timestamp())
    for chunk_id, created_at in failed:
        _enqueue(chunk_id, created_at, f"retry-{stamp}")
    return len(failed)


def _record_failure(chunk_id: int, exc: Exception) -> None:
    chunk = db.session.get(CampaignChunk, chunk_id)
    if chunk is None or chunk.status != "pending":
        db.session.rollback()
        return
    chunk.attempts += 1
    chunk.last_error = type(exc).__name__  # the type only: a database error's text can quote row values
    if chunk.attempts >= MAX_ATTEMPTS:
        chunk.status = "failed"
    db.session.commit()


def requeue_stale(now: dt.datetime | None = None) -> int:
    """Queue again every pending chunk older than ``STALE_AFTER`` (its job was lost or failed)."""
    now = now or utcnow()
    c = CampaignChunk
    stale: list[tuple[int, dt.datetime, int]] = []
    for shop_id in db.session.scalars(sa.select(Shop.id).order_by(Shop.id)):
        # The columns the job ids need, not the chunks' profile ids.
        stmt = sa.select(c.id, c.created_at, c.attempts).where(
            c.shop_id == shop_id, c.status == "pending", c.created_at < now - STALE_AFTER
        )
        stale += db.session.execute(stmt.order_by(c.id)).all()
    db.session.rollback()
    minute = int(now.timestamp() // 60)
    for chunk_id, created_at, attempts in stale:
        _enqueue(chunk_id, created_at, f"sweep-{attempts}-{minute}")
    return len(stale)


def progress(shop: Shop, send_id: int) -> SendProgress:
    """The send's totals so far, with the reasons its profiles were blocked.

    Raises:
        NotFound: no such send in this shop.
    """
    send = get_scoped_or_raise(CampaignSend, shop.id, send_id, "campaign send")
    # Not the profile ids: a send of 100,000 holds 100,000 of them, and a console polls this.
    reasons: Counter = Counter()
    for chunk_reasons in db.session.scalars(
        sa.select(CampaignChunk.reasons).where(
            CampaignChunk.shop_id == shop.id, CampaignChunk.send_id == send.id
        )
    ):
        reasons.update(chunk_reasons or {})
    return _progress(send, _totals(shop.id, [send.id])[send.id], reasons)


def recent(shop: Shop, limit: int = 10) -> list[SendProgress]:
    """The shop's latest sends with their totals (without reasons), newest first: two reads."""
    sends = list(
        db.session.scalars(
            sa.select(CampaignSend)
            .where(CampaignSend.shop_id == shop.id)
            .order_by(CampaignSend.id.desc())
            .limit(limit)
        )
    )
    totals = _totals(shop.id, [s.id for s in sends]) if sends else {}
    return [_progress(send, totals[send.id]) for send in sends]


def _totals(shop_id: int, send_ids: list[int]) -> dict[int, sa.Row]:
    """Per send: its chunks, how many are done or failed, and the sent/blocked/failed sums."""
    c = CampaignChunk
    rows = db.session.execute(
        sa.select(
            c.send_id,
            sa.func.count().label("chunks"),
            sa.func.sum(sa.case((c.status == "done", 1), else_=0)).label("done"),
            sa.func.sum(sa.case((c.status == "failed", 1), else_=0)).label("failed_chunks"),
            sa.func.sum(c.sent).label("sent"),
            sa.func.sum(c.blocked).label("blocked"),
            sa.func.sum(c.failed).label("failed"),
        )
        .where(c.shop_id == shop_id, c.send_id.in_(send_ids))
        .group_by(c.send_id)
    )
    return {row.send_id: row for row in rows}


def _progress(send: CampaignSend, t: sa.Row, reasons: Counter | None = None) -> SendProgress:
    result = BulkResult(int(t.sent), int(t.blocked), int(t.failed), reasons or Counter())
    return SendProgress(
        send.id,
        send.campaign_id,
        send.channel,
        send.send_at,
        send.audience,
        t.chunks,
        int(t.done),
        int(t.failed_chunks),
        result,
    )
