"""Merging two profiles, and undoing a merge exactly within the plan's window.

Rules (the README and docs/identity.md repeat them):

* The survivor is the profile holding the most trusted identifier
  (Shopify customer id > email > phone > marketplace id > web client),
  then the older profile. The other one keeps its id with
  ``merged_into`` pointing at the survivor (the API answers 301).
* A merge moves every row of the loser (identifiers, events, orders,
  consent history, messages, and any table that points at a profile) to
  the survivor, rebuilds the survivor's counters and consent state from
  those rows, writes a ``profile.merged`` event and an audit row.
* Undo is allowed until the plan's window ends (Free 24 h, Starter/Pro
  7 days, Agency 30 days, Enterprise 90 days), then refused with the date.
  It puts back both profile rows exactly, every moved row, and the derived
  rows as they were. Rows that arrived after the merge go to the side that
  owns their identifiers (an event's most trusted identifier, an order's
  email or phone, a consent record's identifier; ``arrivals``); anything
  else stays with the survivor. An undone merge is remembered as "not the
  same person" so resolution does not merge the two again by itself.
* Merges are undone newest first: a later merge still in force that took in
  or merged away the survivor is undone before this one (``undo_refusals``).
* A merge refreshes the survivor's lifecycle stage; its ``profile.merged``
  event carries the change (``stage``), and its undo takes both back.
* Profiles of two shops can never be merged.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
import sqlalchemy.orm as so

from app.errors import Conflict, NotFound
from app.extensions import db
from app.models import AuditLog, EngagementCounter, Event, Identifier, Merge, MergeCandidate, Profile, Shop
from app.models.base import utcnow
from app.plans import get_plan
from app.services import (
    audit,
    details_replay,
    identity_links,
    lifecycle,
    live_scores,
    merge_rows,
    profile_rows,
    shop_lock,
)
from app.services.bulk_sql import is_postgresql
from app.services.consent import rebuild_states, refresh_states
from app.services.counters import recompute_order_counters
from app.services.engagement import counter_rows, recompute_engagement_counters
from app.services.identifiers import TRUST, live_profile
from app.services.shop_settings import shop_timezone
from app.services.timezones import local_time
from app.tenancy import could_be_row_id, get_scoped_or_raise, scoped

PROFILE_FILL = ("first_name", "last_name", "timezone", "timezone_source", "country", "province", "currency")


def anchor(profile: Profile) -> Identifier | None:
    """The profile's most trusted identifier (then the first seen): what names the person."""
    rows = db.session.scalars(scoped(Identifier, profile.shop_id).where(Identifier.profile_id == profile.id))
    return _best(rows)


def _best(rows):
    usable = [r for r in rows if r.kind != "raw_phone"]
    return min(usable, key=lambda r: (TRUST[r.kind], r.first_seen_at, r.value), default=None)


def _anchors(identifiers: list[dict[str, Any]], winner: Profile, loser: Profile) -> dict[str, Any]:
    """``anchor`` of both profiles as ``[kind, value]``, from the identifiers ``merge_rows.take`` read."""
    keys = {}
    for side, profile in (("winner", winner), ("loser", loser)):
        best = _best(SimpleNamespace(**r) for r in identifiers if r["profile_id"] == profile.id)
        keys[side] = [best.kind, best.value] if best is not None else None
    return keys


def survivor_order(a: Profile, b: Profile) -> tuple[Profile, Profile]:
    """``(winner, loser)``: the most trusted identifier wins, then the older profile."""

    def rank(p: Profile):
        best = anchor(p)
        return (TRUST[best.kind] if best else 99, p.created_at, p.id)

    return (a, b) if rank(a) <= rank(b) else (b, a)


def lock_pair(shop: Shop, *ids: int) -> list[Profile]:
    """Load the two profiles of a merge or an undo by id, row-locked on PostgreSQL (``FOR UPDATE``).

    ``FOR UPDATE``, not the ``FOR NO KEY UPDATE`` of ``profile_lock.lock_profiles``: an insert
    that points a row at either profile also waits until the merge commits (its foreign-key
    check takes ``FOR KEY SHARE``), so no row joins the loser while its rows are being moved.
    (Writers that lock the profile first, ``profile_lock.lock_live``, then follow the merge.)
    """
    for profile_id in ids:
        if not could_be_row_id(profile_id):
            raise NotFound(f"profile {profile_id} not found")
    stmt = scoped(Profile, shop.id).where(Profile.id.in_(ids)).order_by(Profile.id)
    if is_postgresql():
        stmt = stmt.with_for_update()
    found = {p.id: p for p in db.session.scalars(stmt.execution_options(populate_existing=True))}
    missing = [i for i in ids if i not in found]
    if missing:
        raise NotFound(f"profile {missing[0]} not found")
    return [found[i] for i in ids]


def merge_profiles(shop: Shop, first_id: int, second_id: int, *, reason: str, actor: str, **kw) -> Merge:
    """Merge two profiles of ``shop`` by id, choosing the survivor by the rules."""
    if first_id == second_id:
        raise Conflict("a profile cannot be merged with itself")
    shop_lock.hold([shop.id])  # no ingest batch of the shop between our reads and our writes
    a, b = lock_pair(shop, first_id, second_id)
    winner, loser = survivor_order(a, b)
    return merge(shop, winner, loser, reason=reason, actor=actor, **kw)


def merge(
    shop: Shop,
    winner: Profile,
    loser: Profile,
    *,
    reason: str,
    actor: str,
    automatic: bool = False,
    candidate: MergeCandidate | None = None,
    evidence: dict[str, Any] | None = None,
    now: dt.datetime | None = None,
) -> Merge:
    """Move every row of ``loser`` to ``winner`` and record how to undo it.

    Raises:
        Conflict: the same profile twice, a merged-away or erased profile.
        NotFound: a profile of another shop.
    """
    now = now or utcnow()
    if winner.shop_id != shop.id or loser.shop_id != shop.id:
        raise NotFound("profile not found in this shop")
    if winner.id == loser.id:
        raise Conflict("a profile cannot be merged with itself")
    for p in (winner, loser):
        if p.merged_into_id is not None:
            survivor = live_profile(p)
            raise Conflict(f"profile {p.id} was already merged into profile {survivor.id}")
        if p.erased_at is not None:
            raise Conflict(f"profile {p.id} was erased and cannot be merged")
    db.session.flush()
    snapshot: dict[str, Any] = {
        "winner": _profile_json(winner),
        "loser": _profile_json(loser),
        "anchors": None,
        "watermark": {},
        "moved": {},
        "removed": {},
        "derived": {},
        "candidates": [],
    }
    read = merge_rows.take(shop.id, winner.id, loser.id, snapshot)
    anchors = snapshot["anchors"] = _anchors(read["identifiers"], winner, loser)
    merge_rows.sync_session(loser.id, winner.id, snapshot, [winner, loser])
    # No autoflush while rebuilding the survivor: its new state goes out in the one flush below.
    with db.session.no_autoflush:
        snapshot["candidates"] = _close_candidates(read["open_candidates"], candidate, actor, now)
        # What only the loser's rows can change is recomputed only when it had some: most automatic
        # merges fold a visitor who bought nothing and gave no consent into a known customer.
        if snapshot["moved"].get("orders.profile_id"):
            recompute_order_counters(winner)
        # merge_rows.take deleted both profiles' counters: the survivor's new ones go in with the merge row.
        counters, winner.last_engaged_at = counter_rows(winner, read["engagement"])
        if snapshot["derived"].get("consent_states") or snapshot["moved"].get("consent_records.profile_id"):
            rebuild_states(winner)  # and their consent states
    _fill_winner(winner, loser)
    loser.merged_into_id = winner.id
    stage = lifecycle.restage(shop, winner, now)  # two buyers of one order each are one loyal customer
    live_scores.refresh_all(shop, [winner], now)  # the loser's recent order or visit is the survivor's
    plan = get_plan(shop.plan)
    row = Merge(
        shop_id=shop.id,
        winner_id=winner.id,
        loser_id=loser.id,
        reason=reason[:60],
        automatic=automatic,
        candidate_id=candidate.id if candidate else None,
        actor=actor,
        undo_deadline=now + plan.merge_undo_window,
        undone_at=None,
        created_at=now,
        snapshot=snapshot,
    )
    new_ids = read["new_ids"]
    if new_ids:  # PostgreSQL drew the ids: the merge, its event, audit row and counters go in one statement
        row.id, row.merged_event_id = new_ids["merge_id"], new_ids["event_id"]
    else:  # the event's external id names the merge
        db.session.add(row)
        db.session.flush()
    event = {
        "id": row.merged_event_id,
        "shop_id": shop.id,
        "profile_id": winner.id,
        "type": "profile.merged",
        "channel": None,
        "source": "c360",
        "external_id": f"merge-{row.id}",
        "identifiers": {},
        "properties": {
            "merge_id": row.id,
            "loser_id": loser.id,
            "reason": reason,
            "automatic": automatic,
            **({"stage": stage} if stage else {}),
        },
        "occurred_at": now,
        "received_at": utcnow(),
        "delivery_id": None,
    }
    details = {**event["properties"], **(evidence or {})}
    entry = audit.values(shop.id, actor, "profile.merged", "profile", winner.id, details)
    entry["created_at"] = utcnow()
    if new_ids:
        merge_rows.record(_columns(row), event, entry, counters)
        so.make_transient_to_detached(row)  # stored as it stands: no SELECT to read it back
        db.session.add(row)
    else:
        event.pop("id")
        stored = Event(**event)
        db.session.add_all([stored, AuditLog(**entry), *(EngagementCounter(**c) for c in counters)])
        db.session.flush()
        row.merged_event_id = stored.id
    if not automatic and anchors["winner"] and anchors["loser"]:
        identity_links.decide(shop.id, anchors["winner"], anchors["loser"], "same", source=actor, at=now)
    db.session.flush()
    return row


def _drop_merged_stage_changes(shop_id: int, row: Merge) -> None:
    """Delete the stage changes recorded since the merge: they were the merged person's, whom undo
    takes apart. Each side gets back the stage it had, exactly; a side that something arrived for
    since records its one change when undo re-stages it, and time's own moves wait for the next
    enrichment run, as they would have unmerged.

    "Since" is by event id, after the merge's own event (a change is dated by the moment it was
    judged at, which a backtest or a late batch may set before the merge).
    """
    since = Event.id > row.merged_event_id if row.merged_event_id else Event.occurred_at >= row.created_at
    db.session.execute(
        sa.delete(Event.__table__).where(
            Event.shop_id == shop_id,
            Event.profile_id.in_((row.winner_id, row.loser_id)),
            Event.type == lifecycle.EVENT_TYPE,
            Event.source == lifecycle.EVENT_SOURCE,
            since,
        )
    )


def undo(shop: Shop, merge_id: int, actor: str, *, now: dt.datetime | None = None) -> Merge:
    """Split a merge back into the two profiles as they were.

    Raises:
        NotFound: no such merge in this shop.
        Conflict: already undone, past the plan's window, or the survivor was merged again since.
    """
    now = now or utcnow()
    shop_lock.hold([shop.id])  # no ingest batch, and no other undo, between our reads and our writes
    row = get_scoped_or_raise(Merge, shop.id, merge_id, "merge", fresh=True)  # as it stands under the lock
    refusal = undo_refusals(shop, [row], now).get(row.id)
    if refusal is not None:
        raise Conflict(refusal.text, code=refusal.code)
    winner, loser = lock_pair(shop, row.winner_id, row.loser_id)
    snap = row.snapshot
    db.session.flush()
    merge_rows.drop_derived(shop.id, [winner.id, loser.id])
    merge_rows.put_back(shop.id, winner.id, loser.id, snap)
    if row.merged_event_id:  # with the stage change the merge made, which it carries
        db.session.execute(sa.delete(Event.__table__).where(Event.id == row.merged_event_id))
    _drop_merged_stage_changes(shop.id, row)
    db.session.expire_all()
    arrivals = _sort_arrivals(shop.id, winner.id, loser.id, snap)
    for name, rows in snap["derived"].items():
        table = db.metadata.tables[name]
        if rows:
            db.session.execute(sa.insert(table), [profile_rows.from_json(table, r) for r in rows])
    db.session.expire_all()
    _restore_profile(winner, snap["winner"])
    _restore_profile(loser, snap["loser"])
    details_replay.reapply({winner.id: winner, loser.id: loser}, arrivals.versions)
    if arrivals.count:  # both rows as they were, then what arrived since: counters, consent, seen, stage
        for p in (winner, loser):
            recompute_order_counters(p)
            recompute_engagement_counters(p)
            refresh_states(p)
            if p.id in arrivals.seen:
                first, last = arrivals.seen[p.id]
                p.first_seen_at = min(filter(None, (p.first_seen_at, first)))
                p.last_seen_at = max(filter(None, (p.last_seen_at, last)))
            lifecycle.refresh_lifecycle(shop, p, now)
        live_scores.refresh_all(shop, [winner, loser], now)
    for entry in snap["candidates"]:
        cand = db.session.get(MergeCandidate, entry["id"])
        if cand is not None:
            cand.status, cand.decided_at, cand.decided_by = "rejected", now, actor
    anchors = snap["anchors"]
    if anchors["winner"] and anchors["loser"]:
        identity_links.decide(shop.id, anchors["winner"], anchors["loser"], "not_same", source=actor, at=now)
    row.undone_at = now
    audit.record(
        shop.id,
        actor,
        "profile.merge_undone",
        "merge",
        row.id,
        {"winner_id": winner.id, "loser_id": loser.id},
    )
    db.session.flush()
    return row


@dataclass(frozen=True)
class Refusal:
    """Why a merge cannot be undone: the full sentence, a short label for a list, and the API's code."""

    text: str
    label: str
    code: str = "conflict"


def undo_refusals(shop: Shop, rows: list[Merge], now: dt.datetime | None = None) -> dict[int, Refusal]:
    """Why each of ``rows`` cannot be undone now, by merge id; a merge left out can be.

    A merge comes apart only while its window is open and no later merge still in force
    took in or merged away its survivor: undo restores the survivor as it was just before
    this merge, which a later merge's rows are not part of. Merges are undone newest first.
    """
    now = now or utcnow()
    zone = ZoneInfo(shop_timezone(shop))
    refusals: dict[int, Refusal] = {}
    open_rows = []
    for row in rows:
        if row.undone_at is not None:
            refusals[row.id] = Refusal(
                f"merge {row.id} was already undone on {local_time(row.undone_at, zone)}", "undone"
            )
        elif now > row.undo_deadline:
            # The window the merge was given (its plan's then): a plan changed since moves no deadline.
            refusals[row.id] = Refusal(
                f"merge {row.id} can no longer be undone: its undo window of "
                f"{window_text(row.undo_deadline - row.created_at)} ended on "
                f"{local_time(row.undo_deadline, zone)}",
                "window closed",
                "undo_window_closed",
            )
        else:
            open_rows.append(row)
    for row, later in _later_merges(shop.id, open_rows).items():
        refusals[row.id] = Refusal(
            f"merge {later.id} (profile {later.loser_id} into profile {later.winner_id}) was made after "
            f"this one and changed profile {row.winner_id}; undo merge {later.id} first: merges are "
            "undone newest first",
            f"undo #{later.id} first",
            "undo_later_merge_first",
        )
    return refusals


def _later_merges(shop_id: int, rows: list[Merge]) -> dict[Merge, Merge]:
    """For each row, the newest merge after it, still in force, that kept or merged away its survivor."""
    if not rows:
        return {}
    survivors = {row.winner_id for row in rows}
    later = list(
        db.session.execute(
            sa.select(Merge.id, Merge.winner_id, Merge.loser_id)
            .where(
                Merge.shop_id == shop_id,
                Merge.id > min(row.id for row in rows),
                Merge.undone_at.is_(None),
                sa.or_(Merge.winner_id.in_(survivors), Merge.loser_id.in_(survivors)),
            )
            .order_by(Merge.id.desc())
        )
    )
    found = {}
    for row in rows:
        newest = next(
            (m for m in later if m.id > row.id and row.winner_id in (m.winner_id, m.loser_id)), None
        )
        if newest is not None:
            found[row] = newest
    return found


def can_undo(row: Merge, now: dt.datetime | None = None) -> bool:
    """True while the merge can be undone (``undo_refusals`` gives none)."""
    return row.id not in undo_refusals(db.session.get(Shop, row.shop_id), [row], now)


def window_text(window: dt.timedelta) -> str:
    """An undo window as a merchant reads it: "24 hours", "7 days"."""
    return (
        f"{int(window.total_seconds() // 3600)} hours"
        if window < dt.timedelta(days=2)
        else f"{window.days} days"
    )


def _columns(obj) -> dict[str, Any]:
    """A mapped object's column values as set (for an INSERT outside the ORM, or a snapshot)."""
    return {c.name: getattr(obj, c.key) for c in obj.__table__.columns}


def _profile_json(profile: Profile) -> dict[str, Any]:
    return profile_rows.to_json(Profile.__table__, _columns(profile))


def _restore_profile(profile: Profile, data: dict[str, Any]) -> None:
    values = profile_rows.from_json(Profile.__table__, data)
    for column in Profile.__table__.columns:
        if column.name != "id":
            setattr(profile, column.key, values[column.name])


def _fill_winner(winner: Profile, loser: Profile) -> None:
    """The survivor keeps its own facts and takes the loser's where it has none."""
    for attr in PROFILE_FILL:
        if getattr(winner, attr) is None and getattr(loser, attr) is not None:
            setattr(winner, attr, getattr(loser, attr))
    firsts = [t for t in (winner.first_seen_at, loser.first_seen_at) if t]
    lasts = [t for t in (winner.last_seen_at, loser.last_seen_at) if t]
    winner.first_seen_at = min(firsts) if firsts else None
    winner.last_seen_at = max(lasts) if lasts else None
    texts = [t for t in (winner.search_text, loser.search_text) if t]
    winner.search_text = " ".join(texts) or None


def _close_candidates(open_ids: list[int], candidate, actor, now) -> list[dict[str, Any]]:
    """Open candidates between the two people (``open_ids``, read by ``merge_rows.take``) are settled."""
    changed = []
    rows = [db.session.get(MergeCandidate, i) for i in open_ids]
    if candidate is not None and candidate not in rows:
        rows.append(candidate)
    for cand in rows:
        changed.append({"id": cand.id, "status": cand.status})
        cand.status = "accepted" if cand is candidate else "merged"
        cand.decided_at, cand.decided_by = now, actor
    return changed


def _sort_arrivals(shop_id: int, winner_id: int, loser_id: int, snap: dict[str, Any]):
    """Send rows that arrived after the merge to the side owning their identifiers."""
    from app.services import arrivals

    return arrivals.sort_arrivals(shop_id, winner_id, loser_id, snap["watermark"])
