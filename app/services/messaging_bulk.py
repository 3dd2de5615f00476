"""Sending a campaign to a whole audience: the same gate and reservation, in bulk.

``send_many`` does per chunk of profiles what ``send_message`` does for
one: lock the chunk (in id order, so it never deadlocks with single
sends), read the facts with a handful of queries, decide, and write the
message log, the ``<channel>.sent`` events, the engagement counters and
the outbox in the same transaction. A blocked profile is dropped from
this send (``blocked``) and stays in the audience.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from app.extensions import db
from app.models import EngagementCounter, Event, Identifier, Message, OutboxItem, Shop
from app.models.base import utcnow
from app.services import gate, gate_facts
from app.services.bulk_sql import copy_rows, id_in, insert_rows, is_postgresql, unnest_select
from app.services.messaging import RECIPIENT_KIND, validate_request
from app.services.profile_lock import lock_profiles

CHUNK = 2500


@dataclass
class BulkResult:
    """What a bulk send did: counts by status and by reason."""

    sent: int = 0
    blocked: int = 0
    failed: int = 0
    reasons: Counter = field(default_factory=Counter)

    @property
    def decisions(self) -> int:
        """How many profiles the gate decided on."""
        return self.sent + self.blocked + self.failed


def _recipients(shop_id: int, profile_ids: list[int], channel: str) -> dict[int, str]:
    stmt = (
        sa.select(Identifier.profile_id, Identifier.value)
        .where(
            Identifier.shop_id == shop_id,
            Identifier.kind == RECIPIENT_KIND[channel],
            Identifier.blocked_reason.is_(None),
            id_in(Identifier.profile_id, profile_ids),
        )
        .order_by(Identifier.profile_id, Identifier.first_seen_at.desc(), Identifier.id.desc())
    )
    # Later rows overwrite earlier ones: the oldest identifier wins, as in ``recipient_for``.
    found = {pid: value for pid, value in db.session.execute(stmt)}
    if channel == "push":
        return {pid: found.get(pid, f"profile:{pid}") for pid in profile_ids}
    return found


def _count_sent(shop_id: int, profile_ids: list[int], channel: str, now: dt.datetime) -> None:
    """Add one ``sent`` to each profile's engagement counter (an upsert)."""
    rows = [
        {
            "shop_id": shop_id,
            "profile_id": pid,
            "channel": channel,
            "metric": "sent",
            "count": 1,
            "last_at": now,
        }
        for pid in profile_ids
    ]
    table = EngagementCounter.__table__
    if is_postgresql():
        stmt = postgresql.insert(table).from_select(*unnest_select(table, rows))
    else:
        stmt = sqlite.insert(table)
    stmt = stmt.on_conflict_do_update(
        index_elements=["profile_id", "channel", "metric"],
        set_={"count": table.c.count + 1, "last_at": stmt.excluded.last_at},
    )
    db.session.execute(stmt) if is_postgresql() else db.session.execute(stmt, rows)


def _send_chunk(
    shop: Shop, policy: gate.GatePolicy, ids: list[int], channel: str, source: str, campaign_id, now, result
) -> None:
    lock_profiles(shop.id, ids)
    facts = gate_facts.load_facts(shop, ids, now, channels=[channel], policy=policy)
    decisions = {pid: gate.decide(policy, f, channel, now) for pid, f in facts.items()}
    allowed = [pid for pid, d in decisions.items() if d.allowed]
    recipients = _recipients(shop.id, allowed, channel) if allowed else {}
    rows = []
    for pid, decision in decisions.items():
        status, reason = ("sent", None) if decision.allowed else ("blocked", decision.reason)
        if decision.allowed and pid not in recipients:
            status, reason = "failed", f"no_address:{channel}"
        result.reasons[reason or "sent"] += 1
        setattr(result, status, getattr(result, status) + 1)
        rows.append(
            {
                "shop_id": shop.id,
                "profile_id": pid,
                "channel": channel,
                "source": source,
                "campaign_id": campaign_id,
                "status": status,
                "reason": reason,
                "retry_at": None if decision.allowed else decision.retry_at,
                "created_at": now,
                "sent_at": now if status == "sent" else None,
                "local_day": now.astimezone(facts[pid].zone.primary).date(),
            }
        )
    if not rows:
        return
    inserted = insert_rows(Message.__table__, rows, returning=("id", "profile_id", "status"))
    sent = [(mid, pid) for mid, pid, status in inserted if status == "sent"]
    if not sent:
        return
    props = {"source": source, "campaign_id": campaign_id, "journey_id": None}
    copy_rows(
        Event.__table__,
        [
            {
                "shop_id": shop.id,
                "profile_id": pid,
                "type": f"{channel}.sent",
                "channel": channel,
                "source": "c360",
                "external_id": f"message-{mid}",
                "identifiers": {},
                "properties": {**props, "message_id": mid},
                "occurred_at": now,
                "received_at": now,
            }
            for mid, pid in sent
        ],
    )
    _count_sent(shop.id, [pid for _, pid in sent], channel, now)
    copy_rows(
        OutboxItem.__table__,
        [
            {
                "shop_id": shop.id,
                "message_id": mid,
                "channel": channel,
                "recipient": recipients[pid],
                "payload": props,
                "created_at": now,
            }
            for mid, pid in sent
        ],
    )


def send_many(
    shop: Shop,
    profile_ids: Iterable[int],
    channel: str,
    *,
    source: str = "campaign",
    campaign_id: str | None = None,
    now: dt.datetime | None = None,
    chunk: int = CHUNK,
) -> BulkResult:
    """Gate and send to a whole audience of live profiles, one transaction per chunk.

    Raises:
        ValidationFailed: an unknown channel or source.
    """
    validate_request(channel, source)
    now = now or utcnow()
    policy = gate_facts.load_policy(shop)
    result = BulkResult()
    ids = sorted(set(profile_ids))
    for start in range(0, len(ids), chunk):
        _send_chunk(shop, policy, ids[start : start + chunk], channel, source, campaign_id, now, result)
        db.session.commit()
    return result
