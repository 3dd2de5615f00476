"""The rows a merge moves, takes aside and puts back: the SQL half of ``merges``.

A merge reads the two profiles' identifiers (to name them), the highest id
of each profile-owned table (to tell later arrivals on undo), their
engagement totals and open candidates, deletes both profiles' derived rows
(kept in the snapshot) and points the loser's rows at the winner. Those
are many small statements, so they are built once with bind parameters and
sent as one (``bulk_sql.OneTrip``) on PostgreSQL. A table with a unique key
that includes the profile column goes on its own afterwards, since its
clashing rows must be set aside before the rest move; so does every table
when one has two profile columns (one statement may not update a row twice).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
import sqlalchemy.orm as so

from app.extensions import db
from app.models import AuditLog, EngagementCounter, Event, Identifier, Merge, MergeCandidate, Profile
from app.services import profile_rows
from app.services.bulk_sql import OneTrip, array_of, is_postgresql
from app.services.engagement import totals_by_type

_PLANS: dict[tuple, tuple[OneTrip, list[str]]] = {}
_RECORDS: dict[tuple, OneTrip] = {}
EVENTS = "events.profile_id"
SHOP, WINNER, LOSER = sa.bindparam("m_shop"), sa.bindparam("m_winner"), sa.bindparam("m_loser")


def take(shop_id: int, winner_id: int, loser_id: int, snapshot: dict[str, Any]) -> dict[str, Any]:
    """Move the loser's rows to the winner and note in ``snapshot`` how to undo it.

    Fills ``watermark``, ``derived``, ``moved`` and ``removed``. Returns what
    the merge needs besides: ``identifiers`` (``profile_id``, ``kind``,
    ``value``, ``first_seen_at``) of both profiles as they were, the
    winner's ``engagement`` totals now (``engagement.totals_by_type`` rows),
    the ids of ``open_candidates`` between the two, and on PostgreSQL
    ``new_ids``: a ``merge_id`` and an ``event_id`` drawn from their sequences.
    """
    trip, names = _plan()
    params = {"m_shop": shop_id, "m_winner": winner_id, "m_loser": loser_id}
    found = dict(zip(names, trip.run(params), strict=True))
    snapshot["watermark"] = {name: mark or 0 for name, mark in found["watermark"][0].items()}
    for name, rows in found.items():
        kind, _, name = name.partition(":")
        if kind == "derived":
            table = db.metadata.tables[name]
            snapshot["derived"][name] = [profile_rows.to_json(table, r) for r in sorted(rows, key=_by_id)]
        elif kind == "moved" and rows:
            snapshot["moved"][name] = sorted(r["id"] for r in rows)
    _move_clashing(shop_id, winner_id, loser_id, snapshot)
    totals = found.get("engagement")
    if totals is None:
        # The events did not move in the one statement: count the winner's now they have.
        totals = list(db.session.execute(totals_by_type(shop_id, [winner_id])).mappings())
    return {
        "identifiers": found["identifiers"],
        "engagement": totals,
        "open_candidates": sorted(r["id"] for r in found["candidates"]),
        "new_ids": _drawn(found.get("new_ids")),
    }


def _by_id(row: dict[str, Any]):
    return row["id"]


def _plan() -> tuple[OneTrip, list[str]]:
    """The statements of ``take`` for this schema, built once (building them costs as much as running).

    Named ``identifiers``, ``watermark``, ``candidates``, ``engagement``,
    ``new_ids``, ``derived:<table>`` and ``moved:<table>.<column>``.
    """
    key = (tuple(db.metadata.tables), is_postgresql())
    if key not in _PLANS:
        identifiers = Identifier.__table__
        pair = [WINNER, LOSER]
        parts: dict[str, sa.Executable] = {
            "identifiers": sa.select(
                identifiers.c.profile_id, identifiers.c.kind, identifiers.c.value, identifiers.c.first_seen_at
            ).where(identifiers.c.shop_id == SHOP, identifiers.c.profile_id.in_(pair)),
            "watermark": _watermarks(),
            "candidates": _open_candidates_between(pair),
            # Both profiles' events before the move are the winner's after it, when all of them move.
            "engagement": totals_by_type(SHOP, pair),
        }
        if is_postgresql():
            parts["new_ids"] = sa.select(
                _next_id("merges").label("merge_id"), _next_id("events").label("event_id")
            )
        moves = {}
        for table, column in profile_rows.referencing_columns():
            if table.name in profile_rows.DERIVED_TABLES:
                where = sa.and_(table.c.shop_id == SHOP, column.in_(pair))
                parts[f"derived:{table.name}"] = sa.delete(table).where(where).returning(*table.c)
            elif not profile_rows.unique_groups(table, column):
                mine = sa.and_(table.c.shop_id == SHOP, column == LOSER)
                update = sa.update(table).where(mine).values({column.name: WINNER})
                moves[f"moved:{table.name}.{column.name}"] = update.returning(table.c.id)
        # Two profile columns in one table: one statement may not update a row twice.
        if len({name.split(".")[0] for name in moves}) == len(moves):
            parts.update(moves)
        if f"moved:{EVENTS}" not in parts:
            del parts["engagement"]
        _PLANS[key] = (OneTrip(list(parts.values())), list(parts))
    return _PLANS[key]


def _open_candidates_between(pair: list) -> sa.Select:
    """Open candidates between the two people: their profiles, and profiles merged into them before.

    A candidate raised against a profile that was merged away since names its survivor
    now, and this merge settles it too. Profiles merged into either side, at any depth,
    by index on ``merged_into_id``.
    """
    profiles, candidates = Profile.__table__, MergeCandidate.__table__
    family = (
        sa.select(profiles.c.id)
        .where(profiles.c.shop_id == SHOP, profiles.c.merged_into_id.in_(pair))
        .cte("family", recursive=True)
    )
    family = family.union_all(
        sa.select(profiles.c.id).where(profiles.c.shop_id == SHOP, profiles.c.merged_into_id == family.c.id)
    )
    members = sa.select(family.c.id)
    return sa.select(candidates.c.id).where(
        candidates.c.shop_id == SHOP,
        candidates.c.status == "open",
        sa.or_(candidates.c.profile_a_id.in_(pair), candidates.c.profile_a_id.in_(members)),
        sa.or_(candidates.c.profile_b_id.in_(pair), candidates.c.profile_b_id.in_(members)),
    )


def _drawn(rows: list[dict[str, Any]] | None) -> dict[str, int] | None:
    """The ids drawn, or None when a table has no sequence to draw from (the caller inserts first)."""
    return rows[0] if rows and None not in rows[0].values() else None


def _next_id(table: str):
    """PostgreSQL: the next id of ``table`` from its sequence, to insert a row with it."""
    return sa.func.nextval(sa.func.pg_get_serial_sequence(table, "id"), type_=sa.BigInteger)


def _planned(name: str) -> bool:
    """True when ``_plan`` moves the rows of ``name`` (``table.column``) in its single statement."""
    return f"moved:{name}" in _plan()[1]


def _watermarks() -> sa.Select:
    """The highest id of each profile-owned table: rows above it arrived after the merge (ids are global)."""
    tables = {
        table.name: table
        for table, _column in profile_rows.referencing_columns()
        if "id" in table.c and table.name not in profile_rows.DERIVED_TABLES
    }
    return sa.select(*[sa.select(sa.func.max(t.c.id)).scalar_subquery().label(n) for n, t in tables.items()])


def _move_clashing(shop_id: int, winner_id: int, loser_id: int, snapshot: dict[str, Any]) -> None:
    """Move what ``_plan`` left: tables with a unique key on the profile, and tables with two profile columns.

    Rows that would clash with the winner's on a unique key are kept aside first.
    """
    for table, column in profile_rows.referencing_columns():
        name = f"{table.name}.{column.name}"
        if table.name in profile_rows.DERIVED_TABLES or _planned(name):
            continue
        mine = sa.and_(table.c.shop_id == shop_id, column == loser_id)
        for others in profile_rows.unique_groups(table, column):
            theirs = sa.select(*[table.c[o] for o in others]).where(
                table.c.shop_id == shop_id, column == winner_id
            )
            clash = sa.tuple_(*[table.c[o] for o in others]).in_(theirs) if others else sa.true()
            rows = profile_rows.delete_rows(table, sa.and_(mine, clash))
            if rows:
                snapshot["removed"].setdefault(name, []).extend(profile_rows.to_json(table, r) for r in rows)
        moved = sa.update(table).where(mine).values({column.name: winner_id}).returning(table.c.id)
        ids = sorted(db.session.scalars(moved))
        if ids:
            snapshot["moved"][name] = ids


def drop_derived(shop_id: int, profile_ids: list[int]) -> None:
    """Delete both profiles' derived rows (undo re-inserts the snapshot's)."""
    for table, column in profile_rows.referencing_columns():
        if table.name in profile_rows.DERIVED_TABLES:
            db.session.execute(sa.delete(table).where(table.c.shop_id == shop_id, column.in_(profile_ids)))


def put_back(shop_id: int, winner_id: int, loser_id: int, snap: dict[str, Any]) -> None:
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


def _chunks(ids: list[int], size: int = 500):
    for start in range(0, len(ids), size):
        yield ids[start : start + size]


def sync_session(loser_id: int, winner_id: int, snapshot: dict[str, Any], profiles: list[Profile]) -> None:
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


def record(
    merge: dict[str, Any], event: dict[str, Any], audit: dict[str, Any], counters: list[dict[str, Any]]
) -> None:
    """Insert the merge row, its ``profile.merged`` event, its audit row and the survivor's engagement
    counters (``take`` deleted both profiles'), with the ids drawn by ``take``.

    One statement on PostgreSQL (``OneTrip``), where the ORM's flush sent an INSERT per
    table and built an object for each row; the caller puts the merge row in the
    session as stored. Every column is given (no defaults to fill in a CTE); the
    counters go in as arrays, one per column, however many there are.
    """
    rows = ((Merge, merge, "m"), (Event, event, "e"), (AuditLog, audit, "a"))
    key = tuple((model.__tablename__, tuple(sorted(values))) for model, values, _ in rows)
    if key not in _RECORDS:
        parts = [_insert_part(model.__table__, values, prefix) for model, values, prefix in rows]
        _RECORDS[key] = OneTrip([*parts, _counters_part()])
    params = {f"{prefix}_{name}": v for _, values, prefix in rows for name, v in values.items()}
    params.update({f"c_{name}": [c[name] for c in counters] for name in COUNTER_COLUMNS})
    _RECORDS[key].run(params)


COUNTER_COLUMNS = ("shop_id", "profile_id", "channel", "metric", "count", "last_at")


def _insert_part(table: sa.Table, values: dict[str, Any], prefix: str) -> sa.Insert:
    columns = {name: sa.bindparam(f"{prefix}_{name}", type_=table.c[name].type) for name in values}
    return sa.insert(table).values(columns).returning(table.c.id)


def _counters_part() -> sa.Insert:
    """``INSERT INTO engagement_counters … SELECT unnest(:c_shop_id), …``: any number of rows, or none."""
    table = EngagementCounter.__table__
    source = sa.select(
        *(
            sa.func.unnest(sa.bindparam(f"c_{name}", type_=array_of(table.c[name]))).label(name)
            for name in COUNTER_COLUMNS
        )
    )
    return sa.insert(table).from_select(list(COUNTER_COLUMNS), source).returning(table.c.id)
