"""Reviewing merge candidates: list them with both sides, accept (merge) or reject.

Rules (the README and docs/identity.md repeat them):

* A candidate is two profiles that may be one person, with the reason
  (``shared_device``, ``shared_phone``, ``shared_email``…) and the
  evidence (the identifier and the signals that carried it).
* Accepting merges them (the survivor follows the merge rules) and is
  undoable like any merge. Rejecting ("not the same person") records the
  decision on both profiles' anchors so resolution never raises the pair
  again nor merges them by itself.
* A candidate whose profiles were merged some other way closes as ``merged``.
* One that a late signal shows time order would not have raised closes as
  ``superseded`` (``candidate_history``): kept, never shown for review.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
import sqlalchemy.orm as so

from app.errors import Conflict
from app.extensions import db
from app.models import Event, Identifier, Merge, MergeCandidate, Order, Profile, Shop
from app.models.base import utcnow
from app.services import identity_links, lifecycle, merges, shop_lock
from app.services.identifiers import live_ids, live_profile, live_profiles
from app.tenancy import get_scoped_or_raise, scoped

SIDE_ORDERS = 10  # the latest orders shown on each side of a pair


@dataclass
class Side:
    """One profile of a candidate, as the review screen shows it."""

    profile: Profile
    identifiers: list[Identifier]
    orders: list[Order]
    last_activity_at: dt.datetime | None


def list_candidates(
    shop: Shop, status: str = "open", limit: int = 100, *, before: int | None = None
) -> list[MergeCandidate]:
    """The shop's candidates with ``status``, newest first (by id, which grows with time).

    Open candidates are shown by their live profiles: one per pair of people (a merge can
    leave two candidates naming the same two people now), the newest, and none whose two
    profiles have become one since it was raised. ``before``: only candidates with a lower id
    (the next page), less those whose pair a newer candidate, on an earlier page, names.
    """
    stmt = scoped(MergeCandidate, shop.id).order_by(MergeCandidate.id.desc())
    if before is not None:
        stmt = stmt.where(MergeCandidate.id < before)
    if status != "all":
        stmt = stmt.where(MergeCandidate.status == status)
    if status != "open":
        return list(db.session.scalars(stmt.limit(limit)))
    shown: list[MergeCandidate] = []
    # The pairs earlier pages showed: those the open candidates from ``before`` on name.
    pairs = _open_pairs(shop, since=before) if before is not None else set()
    # A page of candidates at a time, with all their profiles read at once.
    for page in db.session.scalars(stmt.execution_options(yield_per=limit)).partitions():
        live = live_profiles(shop.id, [i for c in page for i in (c.profile_a_id, c.profile_b_id)])
        for cand in page:
            pair = _live_pair(live, cand.profile_a_id, cand.profile_b_id)
            if pair is None or pair[0] == pair[1] or pair in pairs:
                continue
            pairs.add(pair)
            shown.append(cand)
            if len(shown) == limit:
                return shown
    return shown


def open_pair_count(shop: Shop) -> int:
    """How many pairs of people the open candidates name now: the review's total (``list_candidates``
    shows each once, and none whose two sides became one)."""
    return sum(1 for a, b in _open_pairs(shop) if a != b)


def _open_pairs(shop: Shop, since: int | None = None) -> set[tuple[int, int]]:
    """The live pairs of people the open candidates (from id ``since`` on) name.

    Ids only (the candidates' two sides, then each profile's merge pointer, in chunks): a shop
    with tens of thousands of open pairs is counted without loading a profile.
    """
    stmt = scoped(MergeCandidate, shop.id, MergeCandidate.profile_a_id, MergeCandidate.profile_b_id).where(
        MergeCandidate.status == "open"
    )
    if since is not None:
        stmt = stmt.where(MergeCandidate.id >= since)
    rows = db.session.execute(stmt).all()
    live = live_ids(shop.id, [i for row in rows for i in row])
    pairs = set()
    for a_id, b_id in rows:
        a, b = live.get(a_id), live.get(b_id)
        if a is not None and b is not None:
            pairs.add((min(a, b), max(a, b)))
    return pairs


def _live_pair(live: dict[int, Profile], a_id: int, b_id: int) -> tuple[int, int] | None:
    """The two live profiles a candidate names now, smaller id first; None if one is gone."""
    a, b = live.get(a_id), live.get(b_id)
    return None if a is None or b is None else (min(a.id, b.id), max(a.id, b.id))


def live_sides(cand: MergeCandidate) -> tuple[Profile, Profile]:
    """The live profiles the candidate's two sides belong to now (merges since may have moved them)."""
    return (
        live_profile(db.session.get(Profile, cand.profile_a_id)),
        live_profile(db.session.get(Profile, cand.profile_b_id)),
    )


def sides(shop: Shop, profile_ids: Iterable[int]) -> dict[int, Side]:
    """What a reviewer needs about each profile (by its live profile): identifiers, orders, last activity.

    ``{asked id: Side}``; ids of no profile of this shop are left out. Four reads
    whatever the number of profiles: the Duplicates screen shows up to 50 pairs.
    """
    live = live_profiles(shop.id, profile_ids)
    ids = sorted({p.id for p in live.values()})
    if not ids:
        return {}
    idents: dict[int, list[Identifier]] = {i: [] for i in ids}
    stmt = (
        scoped(Identifier, shop.id)
        .where(Identifier.profile_id.in_(ids))
        .order_by(Identifier.profile_id, Identifier.kind, Identifier.value)
    )
    for row in db.session.scalars(stmt):
        idents[row.profile_id].append(row)
    orders: dict[int, list[Order]] = {i: [] for i in ids}
    for row in db.session.scalars(_latest_orders(shop.id, ids, SIDE_ORDERS)):
        orders[row.profile_id].append(row)
    last_event = dict(
        db.session.execute(
            scoped(Event, shop.id, Event.profile_id, sa.func.max(Event.occurred_at))
            # The customer's own activity: a stage change we recorded says nothing of them.
            .where(Event.profile_id.in_(ids), Event.source != lifecycle.EVENT_SOURCE)
            .group_by(Event.profile_id)
        ).all()
    )
    out = {}
    for asked, profile in live.items():
        times = [t for t in (last_event.get(profile.id), profile.last_seen_at) if t]
        out[asked] = Side(profile, idents[profile.id], orders[profile.id], max(times, default=None))
    return out


def _latest_orders(shop_id: int, profile_ids: list[int], per_profile: int) -> sa.Select:
    """Each profile's latest ``per_profile`` orders (newest first), in one statement."""
    newest_first = (Order.placed_at.desc(), Order.id.desc())
    rank = sa.func.row_number().over(partition_by=Order.profile_id, order_by=newest_first)
    ranked = (
        scoped(Order, shop_id, Order.id, rank.label("rank"))
        .where(Order.profile_id.in_(profile_ids))
        .subquery()
    )
    return (
        sa.select(Order)
        .join(ranked, ranked.c.id == Order.id)
        .where(ranked.c.rank <= per_profile)
        .order_by(Order.profile_id, *newest_first)
    )


def candidate_json(shop: Shop, cand: MergeCandidate) -> dict[str, Any]:
    """The API shape of a candidate (both sides by live profile id)."""
    return candidates_json(shop, [cand])[0]


def candidates_json(shop: Shop, cands: list[MergeCandidate]) -> list[dict[str, Any]]:
    """``candidate_json`` for a list, with every side's live profile read at once.

    An open candidate names its sides by their live profiles (what a decision would merge); a
    decided one by the profiles it was raised for (once merged, their live profile is one).
    """
    live = live_profiles(shop.id, [i for c in cands for i in (c.profile_a_id, c.profile_b_id)])
    return [
        {
            "id": cand.id,
            "status": cand.status,
            "reason": cand.reason,
            "evidence": cand.evidence,
            "profile_ids": [_live_id(live, cand.profile_a_id), _live_id(live, cand.profile_b_id)]
            if cand.status == "open"
            else [cand.profile_a_id, cand.profile_b_id],
            "created_at": cand.created_at.isoformat(),
            "decided_at": cand.decided_at.isoformat() if cand.decided_at else None,
            "decided_by": cand.decided_by,
        }
        for cand in cands
    ]


def _live_id(live: dict[int, Profile], profile_id: int) -> int:
    profile = live.get(profile_id)
    return profile.id if profile is not None else profile_id


def open_sides(cand: MergeCandidate) -> tuple[Profile, Profile]:
    """The two live sides of a candidate still to decide (its preview, its decision).

    Raises:
        Conflict: the candidate was decided already (in another tab, by another reviewer).
    """
    if cand.status != "open":
        raise Conflict(f"merge candidate {cand.id} is already {cand.status}")
    return live_sides(cand)


def already_one(cand: MergeCandidate, profile: Profile) -> Conflict:
    """The refusal of a candidate whose two sides were merged since it was raised."""
    return Conflict(f"the two profiles of candidate {cand.id} are already one (profile {profile.id})")


def _open(shop: Shop, candidate_id: int) -> tuple[MergeCandidate, Profile, Profile]:
    """The open candidate and its two live sides, read under the shop's lock (see ``shop_lock``)."""
    shop_lock.hold([shop.id])
    cand = get_scoped_or_raise(MergeCandidate, shop.id, candidate_id, "merge candidate", fresh=True)
    a, b = open_sides(cand)
    return cand, a, b


def accept(shop: Shop, candidate_id: int, actor: str, *, now: dt.datetime | None = None) -> Merge:
    """Merge the candidate's two profiles ("same person").

    Raises:
        NotFound: no such candidate in this shop.
        Conflict: the candidate was already decided.
    """
    cand, a, b = _open(shop, candidate_id)
    if a.id == b.id:
        cand.status, cand.decided_at, cand.decided_by = "merged", now or utcnow(), actor
        raise already_one(cand, a)
    return merges.merge_profiles(
        shop, a.id, b.id, reason=f"candidate: {cand.reason}", actor=actor, candidate=cand, now=now
    )


def reject(shop: Shop, candidate_id: int, actor: str, *, now: dt.datetime | None = None) -> MergeCandidate:
    """Mark the candidate "not the same person" and remember it for future resolution."""
    now = now or utcnow()
    cand, a, b = _open(shop, candidate_id)
    cand.status, cand.decided_at, cand.decided_by = "rejected", now, actor
    anchor_a, anchor_b = merges.anchor(a), merges.anchor(b)
    if anchor_a is not None and anchor_b is not None:
        identity_links.decide(
            shop.id,
            (anchor_a.kind, anchor_a.value),
            (anchor_b.kind, anchor_b.value),
            "not_same",
            source=actor,
            at=now,
        )
    db.session.flush()
    return cand


def merges_json(shop: Shop, rows: list[Merge], now: dt.datetime | None = None) -> list[dict[str, Any]]:
    """The API shape of merges: ``undoable`` says whether undo would be taken now, and if not,
    ``undo_refused`` says why (already undone, window closed, a later merge to undo first)."""
    refusals = merges.undo_refusals(shop, rows, now)
    return [_merge_json(row, refusals.get(row.id)) for row in rows]


def merge_json(row: Merge, now: dt.datetime | None = None) -> dict[str, Any]:
    """The API shape of one merge (``merges_json``)."""
    return merges_json(db.session.get(Shop, row.shop_id), [row], now)[0]


def _merge_json(row: Merge, refusal: merges.Refusal | None) -> dict[str, Any]:
    return {
        "id": row.id,
        "winner_id": row.winner_id,
        "loser_id": row.loser_id,
        "reason": row.reason,
        "automatic": row.automatic,
        "candidate_id": row.candidate_id,
        "actor": row.actor,
        "created_at": row.created_at.isoformat(),
        "undo_deadline": row.undo_deadline.isoformat(),
        "undone_at": row.undone_at.isoformat() if row.undone_at else None,
        "undoable": refusal is None,
        "undo_refused": None if refusal is None else {"code": refusal.code, "message": refusal.text},
    }


def list_merges(
    shop: Shop, limit: int = 100, *, before: int | None = None, profile_id: int | None = None
) -> list[Merge]:
    """The shop's merges, newest first, without their undo snapshots (large, and a list shows none).

    ``before``: only merges with a lower id (the next page after a merge of that id; a merge's
    id grows with its time). ``profile_id``: only merges that kept or merged away that profile.
    """
    stmt = scoped(Merge, shop.id).order_by(Merge.id.desc()).limit(limit)
    if before is not None:
        stmt = stmt.where(Merge.id < before)
    if profile_id is not None:
        stmt = stmt.where(sa.or_(Merge.winner_id == profile_id, Merge.loser_id == profile_id))
    return list(db.session.scalars(stmt.options(so.defer(Merge.snapshot))))
