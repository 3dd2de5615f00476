"""The identity graph in the database: sightings, human decisions, and neighbourhoods.

``identifier_links`` holds one row per pair of identifiers and relation:
``seen`` (carried by one signal; first and last sighting kept), ``same``
(a person merged the two profiles) and ``not_same`` (a person said they
are different people, or undid a merge). Resolution loads the
neighbourhood of a signal from here and re-partitions only that.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable

import sqlalchemy as sa

from app.extensions import db
from app.models import Identifier, IdentifierLink
from app.services.deferred_stamps import DeferredStamps
from app.tenancy import scoped

# A neighbourhood larger than this is cut (blocked identifiers already stop the walk).
MAX_COMPONENT = 2000
OPPOSITE = {"same": "not_same", "not_same": "same"}


def _pair(a: int, b: int) -> tuple[int, int]:
    return (a, b) if a < b else (b, a)


def keys_match(keys) -> sa.ColumnElement[bool]:
    """``(kind, value) IN keys`` written as ORs, which SQLite answers from the unique index."""
    return sa.or_(*[sa.and_(Identifier.kind == k, Identifier.value == v) for k, v in keys])


def identifier_ids(shop_id: int, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], int]:
    """``{(kind, value): id}`` for the keys that exist in the shop."""
    keys = [tuple(k) for k in keys]
    if not keys:
        return {}
    stmt = scoped(Identifier, shop_id, Identifier.kind, Identifier.value, Identifier.id).where(
        keys_match(keys)
    )
    return {(k, v): i for k, v, i in db.session.execute(stmt)}


def decide(shop_id: int, key_a, key_b, relation: str, *, source: str, at: dt.datetime) -> None:
    """Record a person's ``same``/``not_same`` between two identifiers, replacing the opposite."""
    ids = identifier_ids(shop_id, [key_a, key_b])
    if len(ids) < 2:
        return
    a, b = _pair(*ids.values())
    where = sa.and_(IdentifierLink.shop_id == shop_id, IdentifierLink.a_id == a, IdentifierLink.b_id == b)
    db.session.execute(sa.delete(IdentifierLink).where(where, IdentifierLink.relation == OPPOSITE[relation]))
    exists = db.session.scalar(sa.select(IdentifierLink.id).where(where, IdentifierLink.relation == relation))
    if exists is None:
        db.session.add(
            IdentifierLink(
                shop_id=shop_id,
                a_id=a,
                b_id=b,
                relation=relation,
                source=source[:40],
                first_seen_at=at,
                last_seen_at=at,
            )
        )
    db.session.flush()


def record_sightings(
    shop_id: int,
    ids: list[int],
    *,
    source: str,
    at: dt.datetime,
    event_ref: str | None,
    stamps: DeferredStamps,
    known: dict[tuple[int, int], IdentifierLink] | None = None,
    new_id: Callable[[], int | None] | None = None,
) -> list[IdentifierLink]:
    """Link every pair of ``ids`` as seen together at ``at``; return the links it created.

    Args:
        stamps: where the batch keeps known links' new times until it writes them together.
        known: the ``seen`` links among ``ids`` already read (a batch holds them),
            which saves the query; a pair missing from it does not exist.
        new_id: names a new link before its INSERT (``id_blocks``); None leaves it to the INSERT.
    """
    pairs = {_pair(a, b) for i, a in enumerate(ids) for b in ids[i + 1 :] if a != b}
    if not pairs:
        return []
    if known is None:
        known = {
            (r.a_id, r.b_id): r
            for r in db.session.scalars(
                scoped(IdentifierLink, shop_id).where(
                    IdentifierLink.relation == "seen",
                    # Every pair among ``ids`` is wanted, so two INs select exactly them (and use the index).
                    IdentifierLink.a_id.in_(ids),
                    IdentifierLink.b_id.in_(ids),
                )
            )
        }
    made = []
    for a, b in sorted(pairs):
        row = known.get((a, b))
        if row is None:
            row = IdentifierLink(
                id=new_id() if new_id is not None else None,
                shop_id=shop_id,
                a_id=a,
                b_id=b,
                relation="seen",
                source=source[:40],
                event_ref=(event_ref or "")[:255] or None,
                first_seen_at=at,
                last_seen_at=at,
            )
            db.session.add(row)
            made.append(row)
        elif at < row.first_seen_at:
            ref = (event_ref or "")[:255] or None
            stamps.set(row, first_seen_at=at, source=source[:40], event_ref=ref)
        elif at > row.last_seen_at:
            stamps.set(row, last_seen_at=at)
    return made


def load_component(
    shop_id: int, start_ids: Iterable[int]
) -> tuple[dict[int, Identifier], list[IdentifierLink]]:
    """The identifiers reachable from ``start_ids`` and every link among them.

    The walk follows links and shared profiles; it does not go past a
    blocked identifier, which is what keeps a library computer's cookie
    from pulling the whole shop into one neighbourhood.
    """
    nodes: dict[int, Identifier] = {}
    frontier = set(start_ids)
    while frontier and len(nodes) < MAX_COMPONENT:
        rows = list(db.session.scalars(scoped(Identifier, shop_id).where(Identifier.id.in_(frontier))))
        nodes.update((r.id, r) for r in rows)
        open_ids = [r.id for r in rows if r.blocked_reason is None]
        nxt: set[int] = set()
        if open_ids:
            stmt = scoped(IdentifierLink, shop_id, IdentifierLink.a_id, IdentifierLink.b_id).where(
                sa.or_(IdentifierLink.a_id.in_(open_ids), IdentifierLink.b_id.in_(open_ids))
            )
            for a, b in db.session.execute(stmt):
                nxt.update((a, b))
        profile_ids = {r.profile_id for r in rows}
        nxt.update(
            db.session.scalars(
                scoped(Identifier, shop_id, Identifier.id).where(Identifier.profile_id.in_(profile_ids))
            )
        )
        frontier = nxt - set(nodes)
    ids = list(nodes)
    links = (
        list(
            db.session.scalars(
                scoped(IdentifierLink, shop_id).where(
                    IdentifierLink.a_id.in_(ids), IdentifierLink.b_id.in_(ids)
                )
            )
        )
        if ids
        else []
    )
    return nodes, links
