"""What the Duplicates screen shows: open pairs side by side, recent merges, previews.

Kept apart from the views so the screen and its tests read the same
numbers; nothing here changes data.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from app.extensions import db
from app.models import Merge, MergeCandidate, Profile, Shop
from app.models.base import utcnow
from app.plans import get_plan
from app.services import merge_candidates, merges, profile_rows
from app.tenancy import get_scoped_or_raise, scoped

REASONS = {
    "shared_device": "Same browser (cookie) used with both",
    "shared_phone": "Same phone number on both",
    "shared_email": "Same email on two Shopify customers",
    "shared_marketplace_id": "Same marketplace account on both",
    "second_amazon_buyer": "A second Amazon account for the same person",
    "second_ebay_user": "A second eBay account for the same person",
    "seen_together": "Seen together in one signal",
}
RECENT_MERGES = 20  # merges per page of Recent merges
PAIRS_PAGE = 50  # candidates per page of the review


@dataclass
class Pair:
    """One open candidate with both sides loaded."""

    candidate: MergeCandidate
    label: str
    sides: list[merge_candidates.Side]


def open_pairs(shop: Shop, *, before: int | None = None) -> tuple[list[Pair], int | None]:
    """A page of open candidates (newest first) with both profiles' identifiers, orders and last
    activity, and the ``before`` of the next page (None on the last): none is out of reach."""
    candidates = merge_candidates.list_candidates(shop, "open", PAIRS_PAGE + 1, before=before)
    candidates, following = _next_page(candidates, PAIRS_PAGE)
    side_of = merge_candidates.sides(shop, {i for c in candidates for i in (c.profile_a_id, c.profile_b_id)})
    return [
        Pair(
            cand,
            REASONS.get(cand.reason, cand.reason),
            [side_of[cand.profile_a_id], side_of[cand.profile_b_id]],
        )
        for cand in candidates
    ], following


def _next_page(rows: list, size: int) -> tuple[list, int | None]:
    """``rows`` read one past ``size``: the page, and the id the next page starts before."""
    return rows[:size], rows[size - 1].id if len(rows) > size else None


def recent_merges(
    shop: Shop, now: dt.datetime | None = None, *, before: int | None = None
) -> tuple[list[dict[str, Any]], int | None]:
    """A page of merges (newest first) with both profiles' names and whether Undo is still
    offered, and the ``before`` of the next page (None on the last)."""
    now = now or utcnow()
    rows, following = _next_page(
        merge_candidates.list_merges(shop, RECENT_MERGES + 1, before=before), RECENT_MERGES
    )
    ids = {i for row in rows for i in (row.winner_id, row.loser_id)}
    profiles = {p.id: p for p in db.session.scalars(scoped(Profile, shop.id).where(Profile.id.in_(ids)))}
    refusals = merges.undo_refusals(shop, rows, now)
    return [
        {
            "merge": row,
            "winner": profiles.get(row.winner_id),
            "loser": profiles.get(row.loser_id),
            "undoable": row.id not in refusals,
            "refusal": refusals.get(row.id),
        }
        for row in rows
    ], following


def why(reason: str) -> str:
    """A merge's reason as a reviewer reads it: ``candidate: shared_phone`` is the candidate's label."""
    kind, _, detail = reason.partition(": ")
    if kind == "candidate" and detail:
        return f"Accepted candidate: {REASONS.get(detail, detail.replace('_', ' '))}"
    if kind == "auto" and detail:
        return detail[:1].upper() + detail[1:]  # "linked by shopify"
    return "Merged by hand" if reason == "manual" else reason


def _counts(shop_id: int, profile_id: int) -> dict[str, int]:
    counts = {}
    for table, column in profile_rows.referencing_columns():
        if table.name in profile_rows.DERIVED_TABLES:
            continue
        n = db.session.scalar(
            sa.select(sa.func.count())
            .select_from(table)
            .where(table.c.shop_id == shop_id, column == profile_id)
        )
        if n:
            counts[table.name.replace("_", " ")] = n
    return counts


def merge_preview(shop: Shop, candidate_id: int) -> dict[str, Any]:
    """Who survives and how many rows of the other profile will move to it."""
    cand = get_scoped_or_raise(MergeCandidate, shop.id, candidate_id, "merge candidate")
    a, b = merge_candidates.open_sides(cand)
    if a.id == b.id:
        raise merge_candidates.already_one(cand, a)
    winner, loser = merges.survivor_order(a, b)
    window = get_plan(shop.plan).merge_undo_window
    return {
        "candidate": cand,
        "winner": winner,
        "loser": loser,
        "moves": amounts(_counts(shop.id, loser.id)),
        "undo_for": merges.window_text(window),
        "undo_until": utcnow() + window,
    }


def amounts(counts: dict[str, int]) -> list[str]:
    """``{"identifiers": 1, "events": 3}`` as ``["1 identifier", "3 events"]`` for a sentence."""
    return [f"{n:,} {name.removesuffix('s') if n == 1 else name}" for name, n in counts.items()]


def undo_preview(shop: Shop, merge_id: int) -> dict[str, Any]:
    """What an undo will put back: the rows that moved, per table."""
    row = get_scoped_or_raise(Merge, shop.id, merge_id, "merge")
    refusal = merges.undo_refusals(shop, [row]).get(row.id)
    moved = {
        name.split(".")[0].replace("_", " "): len(ids)
        for name, ids in (row.snapshot or {}).get("moved", {}).items()
    }
    return {
        "merge": row,
        "winner": db.session.get(Profile, row.winner_id),
        "loser": db.session.get(Profile, row.loser_id),
        "moves": amounts(moved),
        "undoable": refusal is None,
        "refusal": refusal,
    }
