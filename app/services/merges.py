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
  email or phone, a consent record's identifier); anything else stays with
  the survivor. An undone merge is remembered as "not the same person" so
  resolution does not merge the two again by itself.
* Profiles of two shops can never be merged.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
import sqlalchemy.orm as so

from app.errors import Conflict, NotFound
from app.extensions import db
from app.models import Event, Identifier, Merge, MergeCandidate, Profile, Shop
from app.models.base import utcnow
from app.plans import get_plan
from app.services import audit, identity_links, profile_rows
from app.services.consent import rebuild_states, refresh_states
from app.services.counters import recompute_order_counters
from app.services.engagement import add_counters_from_events, recompute_engagement_counters
from app.services.identifiers import TRUST
from app.tenancy import get_scoped_or_raise, scoped

PROFILE_FILL = ("first_name", "last_name", "timezone", "timezone_source", "country", "province", "currency")


def anchor(profile: Profile) -> Identifier | None:
    """The profile's most trusted identifier (then the first seen): what names the person."""
    rows = db.session.scalars(scoped(Identifier, profile.shop_id).where(Identifier.profile_id == profile.id))
    return _best(rows)


def _best(rows):
    usable = [r for r in rows if r.kind != "raw_phone"]
    return min(usable, key=lambda r: (TRUST[r.kind], r.first_seen_at, r.value), default=None)


def _anchor_keys(shop_id: int, winner: Profile, loser: Profile) -> dict[str, list[str] | None]:
    """``anchor`` of both profiles as ``[kind, value]``, in one read of their identifiers' keys."""
    columns = (Identifier.profile_id, Identifier.kind, Identifier.value, Identifier.first_seen_at)
    stmt = scoped(Identifier, shop_id, *columns).where(Identifier.profile_id.in_([winner.id, loser.id]))
    rows = list(db.session.execute(stmt))
    keys = {}
    for side, profile in (("winner", winner), ("loser", loser)):
        best = _best(r for r in rows if r.profile_id == profile.id)
        keys[side] = [best.kind, best.value] if best is not None else None
    return keys


def survivor_order(a: Profile, b: Profile) -> tuple[Profile, Profile]:
    """``(winner, loser)``: the most trusted identifier wins, then the older profile."""

    def rank(p: Profile):
        best = anchor(p)
        return (TRUST[best.kind] if best else 99, p.created_at, p.id)

    return (a, b) if rank(a) <= rank(b) else (b, a)


def lock_profiles(shop: Shop, *ids: int) -> list[Profile]:
    """Load this shop's profiles by id, row-locked on PostgreSQL (``FOR UPDATE``)."""
    stmt = scoped(Profile, shop.id).where(Profile.id.in_(ids)).order_by(Profile.id)
    if db.session.get_bind().dialect.name == "postgresql":
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
    a, b = lock_profiles(shop, first_id, second_id)
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
            raise Conflict(f"profile {p.id} was already merged into profile {p.merged_into_id}")
        if p.erased_at is not None:
            raise Conflict(f"profile {p.id} was erased and cannot be merged")
    db.session.flush()
    anchors = _anchor_keys(shop.id, winner, loser)
    snapshot: dict[str, Any] = {
        "winner": _profile_json(winner),
        "loser": _profile_json(loser),
        "anchors": anchors,
        "watermark": _watermarks(),
        "moved": {},
        "removed": {},
        "derived": {},
        "candidates": [],
    }
    _take_derived(shop.id, [winner.id, loser.id], snapshot)
    _move_rows(shop.id, loser.id, winner.id, snapshot)
    _sync_session(loser.id, winner.id, snapshot, [winner, loser])
    # Only reads until the flush below, so the survivor's new state is written in one UPDATE.
    with db.session.no_autoflush:
        snapshot["candidates"] = _close_candidates(shop.id, winner.id, loser.id, candidate, actor, now)
        recompute_order_counters(winner)
        add_counters_from_events(winner)  # _take_derived deleted both profiles' counters
        rebuild_states(winner)  # and their consent states
    _fill_winner(winner, loser)
    loser.merged_into_id = winner.id
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
        created_at=now,
        snapshot=snapshot,
    )
    db.session.add(row)
    db.session.flush()
    event = Event(
        shop_id=shop.id,
        profile_id=winner.id,
        type="profile.merged",
        source="c360",
        external_id=f"merge-{row.id}",
        properties={"merge_id": row.id, "loser_id": loser.id, "reason": reason, "automatic": automatic},
        occurred_at=now,
    )
    db.session.add(event)
    db.session.flush()
    row.merged_event_id = event.id
    if not automatic and anchors["winner"] and anchors["loser"]:
        identity_links.decide(shop.id, anchors["winner"], anchors["loser"], "same", source=actor, at=now)
    audit.record(
        shop.id,
        actor,
        "profile.merged",
        "profile",
        winner.id,
        {
            "merge_id": row.id,
            "loser_id": loser.id,
            "reason": reason,
            "automatic": automatic,
            **(evidence or {}),
        },
    )
    db.session.flush()
    return row


def undo(shop: Shop, merge_id: int, actor: str, *, now: dt.datetime | None = None) -> Merge:
    """Split a merge back into the two profiles as they were.

    Raises:
        NotFound: no such merge in this shop.
        Conflict: already undone, past the plan's window, or the survivor was merged again since.
    """
    now = now or utcnow()
    row = get_scoped_or_raise(Merge, shop.id, merge_id, "merge")
    if row.undone_at is not None:
        raise Conflict(f"merge {row.id} was already undone on {row.undone_at:%d %b %Y %H:%M} UTC")
    if now > row.undo_deadline:
        window = get_plan(shop.plan).merge_undo_window
        raise Conflict(
            f"merge {row.id} can no longer be undone: the {get_plan(shop.plan).label} plan allows undo "
            f"for {_days(window)} and that window ended on {row.undo_deadline:%d %b %Y %H:%M} UTC",
            code="undo_window_closed",
        )
    winner, loser = lock_profiles(shop, row.winner_id, row.loser_id)
    if winner.merged_into_id is not None:
        raise Conflict(
            f"profile {winner.id} was merged into profile {winner.merged_into_id} after this merge; "
            "undo that merge first"
        )
    snap = row.snapshot
    db.session.flush()
    _drop_derived(shop.id, [winner.id, loser.id])
    _move_back(shop.id, winner.id, loser.id, snap)
    if row.merged_event_id:
        db.session.execute(sa.delete(Event.__table__).where(Event.id == row.merged_event_id))
    db.session.expire_all()
    arrived = _sort_arrivals(shop.id, winner.id, loser.id, snap)
    for name, rows in snap["derived"].items():
        table = db.metadata.tables[name]
        if rows:
            db.session.execute(sa.insert(table), [profile_rows.from_json(table, r) for r in rows])
    db.session.expire_all()
    _restore_profile(winner, snap["winner"])
    _restore_profile(loser, snap["loser"])
    if arrived:
        for p in (winner, loser):
            recompute_order_counters(p)
            recompute_engagement_counters(p)
            refresh_states(p)
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


def _move_back(shop_id: int, winner_id: int, loser_id: int, snap: dict[str, Any]) -> None:
    """Point the moved rows at the loser again and re-insert the rows set aside."""
    for name, ids in snap["moved"].items():
        table_name, column_name = name.split(".")
        table = db.metadata.tables[table_name]
        column = table.c[column_name]
        for chunk in _chunks(ids):
            db.session.execute(
                sa.update(table)
                .where(table.c.shop_id == shop_id, table.c.id.in_(chunk), column == winner_id)
                .values({column_name: loser_id})
            )
    for name, rows in snap["removed"].items():
        table = db.metadata.tables[name.split(".")[0]]
        db.session.execute(sa.insert(table), [profile_rows.from_json(table, r) for r in rows])


def can_undo(shop: Shop, row: Merge, now: dt.datetime | None = None) -> bool:
    """True while the merge is not undone and its window is open."""
    return row.undone_at is None and (now or utcnow()) <= row.undo_deadline


def _days(window: dt.timedelta) -> str:
    return (
        f"{int(window.total_seconds() // 3600)} hours"
        if window < dt.timedelta(days=2)
        else f"{window.days} days"
    )


def _chunks(ids: list[int], size: int = 500):
    for start in range(0, len(ids), size):
        yield ids[start : start + size]


def _profile_json(profile: Profile) -> dict[str, Any]:
    table = Profile.__table__
    return profile_rows.to_json(table, {c.name: getattr(profile, c.key) for c in table.columns})


def _restore_profile(profile: Profile, data: dict[str, Any]) -> None:
    values = profile_rows.from_json(Profile.__table__, data)
    for column in Profile.__table__.columns:
        if column.name != "id":
            setattr(profile, column.key, values[column.name])


def _watermarks() -> dict[str, int]:
    """The highest id of each profile-owned table: rows above it arrived after the merge.

    One SELECT of a ``max(id)`` subquery per table (ids are global, not per shop).
    """
    tables = {
        table.name: table
        for table, _column in profile_rows.referencing_columns()
        if "id" in table.c and table.name not in profile_rows.DERIVED_TABLES
    }
    stmt = sa.select(*[sa.select(sa.func.max(t.c.id)).scalar_subquery() for t in tables.values()])
    return {name: mark or 0 for name, mark in zip(tables, db.session.execute(stmt).one(), strict=True)}


def _take_derived(shop_id: int, profile_ids: list[int], snapshot: dict[str, Any]) -> None:
    for table, column in profile_rows.referencing_columns():
        if table.name in profile_rows.DERIVED_TABLES:
            where = sa.and_(table.c.shop_id == shop_id, column.in_(profile_ids))
            snapshot["derived"][table.name] = [
                profile_rows.to_json(table, r) for r in profile_rows.delete_rows(table, where)
            ]


def _drop_derived(shop_id: int, profile_ids: list[int]) -> None:
    for table, column in profile_rows.referencing_columns():
        if table.name in profile_rows.DERIVED_TABLES:
            db.session.execute(sa.delete(table).where(table.c.shop_id == shop_id, column.in_(profile_ids)))


def _move_rows(shop_id: int, loser_id: int, winner_id: int, snapshot: dict[str, Any]) -> None:
    """Point the loser's rows at the winner; rows that would clash on a unique key are kept aside."""
    moves = []
    for table, column in profile_rows.referencing_columns():
        if table.name in profile_rows.DERIVED_TABLES:
            continue
        name = f"{table.name}.{column.name}"
        mine = sa.and_(table.c.shop_id == shop_id, column == loser_id)
        for others in profile_rows.unique_groups(table, column):
            theirs = sa.select(*[table.c[o] for o in others]).where(
                table.c.shop_id == shop_id, column == winner_id
            )
            clash = sa.tuple_(*[table.c[o] for o in others]).in_(theirs) if others else sa.true()
            rows = profile_rows.delete_rows(table, sa.and_(mine, clash))
            if rows:
                snapshot["removed"].setdefault(name, []).extend(profile_rows.to_json(table, r) for r in rows)
        # UPDATE … RETURNING names the rows it moves (SQLite has it since 3.35).
        moves.append(
            (name, sa.update(table).where(mine).values({column.name: winner_id}).returning(table.c.id))
        )
    for name, ids in _run_moves(moves):
        if ids:
            snapshot["moved"][name] = sorted(ids)


def _run_moves(moves: list[tuple[str, sa.Update]]) -> list[tuple[str, list[int]]]:
    """Run the UPDATEs; on PostgreSQL as one statement of data-modifying CTEs (a round trip each costs).

    Only when no table is updated twice: two CTEs changing the same row is undefined in PostgreSQL.
    """
    tables = [name.split(".")[0] for name, _stmt in moves]
    if db.session.get_bind().dialect.name != "postgresql" or len(set(tables)) < len(tables) or not moves:
        return [(name, list(db.session.scalars(stmt))) for name, stmt in moves]
    parts = []
    for n, (_name, stmt) in enumerate(moves):
        cte = stmt.cte(f"moved_{n}")
        parts.append(sa.select(sa.literal(n).label("n"), cte.c.id))
    found: list[list[int]] = [[] for _ in moves]
    for n, row_id in db.session.execute(sa.union_all(*parts)):
        found[n].append(row_id)
    return [(name, ids) for (name, _stmt), ids in zip(moves, found, strict=True)]


def _sync_session(loser_id: int, winner_id: int, snapshot: dict[str, Any], profiles: list[Profile]) -> None:
    """Tell the session's objects what the bulk UPDATEs and DELETEs of a merge did.

    Expiring the whole session instead would make a batch of signals, which
    holds thousands of identifiers, re-read every one of them after each
    automatic merge. Moved rows get the winner's id, rows deleted or taken
    aside (derived read models, unique-key clashes) are expired, and
    relationships that point through a changed column are expired. The
    snapshot names every such row by id, so only those are looked up.
    """
    classes = {m.local_table.name: m for m in db.Model.registry.mappers}
    identity = db.session.identity_map
    for name, ids in snapshot["moved"].items():
        table, column_name = name.split(".")
        mapper = classes.get(table)
        if mapper is None:
            continue
        column = mapper.local_table.c[column_name]
        key = mapper.get_property_by_column(column).key
        stale = [r.key for r in mapper.relationships if column in r.local_columns]
        for row_id in ids:
            obj = identity.get(mapper.identity_key_from_primary_key([row_id]))
            if obj is not None and obj.__dict__.get(key) == loser_id:
                so.attributes.set_committed_value(obj, key, winner_id)
                if stale:
                    db.session.expire(obj, stale)
    gone = [(name.split(".")[0], rows) for name, rows in snapshot["removed"].items()]
    for table, rows in [*gone, *snapshot["derived"].items()]:
        mapper = classes.get(table)
        for row in rows if mapper is not None else ():
            obj = identity.get(mapper.identity_key_from_primary_key([row["id"]]))
            if obj is not None:
                db.session.expire(obj)
    for profile in profiles:
        db.session.expire(profile, [r.key for r in sa.inspect(Profile).relationships])


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


def _close_candidates(shop_id, winner_id, loser_id, candidate, actor, now) -> list[dict[str, Any]]:
    """Open candidates between the two profiles are settled by this merge."""
    pair = {winner_id, loser_id}
    changed = []
    stmt = scoped(MergeCandidate, shop_id).where(
        MergeCandidate.status == "open",
        MergeCandidate.profile_a_id.in_(pair),
        MergeCandidate.profile_b_id.in_(pair),
    )
    rows = list(db.session.scalars(stmt))
    if candidate is not None and candidate not in rows:
        rows.append(candidate)
    for cand in rows:
        changed.append({"id": cand.id, "status": cand.status})
        cand.status = "accepted" if cand is candidate else "merged"
        cand.decided_at, cand.decided_by = now, actor
    return changed


def _sort_arrivals(shop_id: int, winner_id: int, loser_id: int, snap: dict[str, Any]) -> bool:
    """Send rows that arrived after the merge to the side owning their identifiers."""
    from app.services import arrivals

    return arrivals.sort_arrivals(shop_id, winner_id, loser_id, snap["watermark"])
