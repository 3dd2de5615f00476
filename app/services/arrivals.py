"""Rows that reached a survivor after its merge: which side they belong to on undo.

Each goes to the profile that owns its identifiers: a new identifier to
the side it was seen with, an event to the owner of its most trusted
identifier, an order to the owner of its email or phone, a consent record
to the owner of its identifier. Anything else stays with the survivor.
"""

from __future__ import annotations

import sqlalchemy as sa

from app.extensions import db
from app.models import ConsentRecord, Event, Identifier, IdentifierLink, Order
from app.services.identifiers import TRUST
from app.tenancy import scoped


def _owned(shop_id: int, profile_id: int) -> dict[tuple[str, str], int]:
    stmt = scoped(Identifier, shop_id, Identifier.kind, Identifier.value, Identifier.id).where(
        Identifier.profile_id == profile_id
    )
    return {(k, v): i for k, v, i in db.session.execute(stmt)}


def _new_rows(model, shop_id: int, profile_id: int, watermark: int) -> list:
    return list(
        db.session.scalars(
            scoped(model, shop_id)
            .where(model.profile_id == profile_id, model.id > watermark)
            .order_by(model.id)
        )
    )


def _event_keys(identifiers: dict) -> list[tuple[str, str]]:
    keys = []
    for kind, values in (identifiers or {}).items():
        for value in values if isinstance(values, list) else [values]:
            if kind in TRUST and value is not None:
                keys.append((kind, str(value)))
    return sorted(keys, key=lambda k: (TRUST[k[0]], k[1]))


def _sort_identifiers(shop_id: int, winner_id: int, loser_id: int, watermark: int) -> int:
    fresh = _new_rows(Identifier, shop_id, winner_id, watermark)
    loser_ids = set(_owned(shop_id, loser_id).values())
    winner_ids = set(_owned(shop_id, winner_id).values()) - {r.id for r in fresh}
    moved = 0
    for row in fresh:
        stmt = scoped(IdentifierLink, shop_id, IdentifierLink.a_id, IdentifierLink.b_id).where(
            IdentifierLink.relation == "seen",
            sa.or_(IdentifierLink.a_id == row.id, IdentifierLink.b_id == row.id),
        )
        partners = {a if b == row.id else b for a, b in db.session.execute(stmt)}
        if partners & loser_ids and not partners & winner_ids:
            row.profile_id = loser_id
            loser_ids.add(row.id)
            moved += 1
    return len(fresh)


def sort_arrivals(shop_id: int, winner_id: int, loser_id: int, watermark: dict[str, int]) -> bool:
    """Move post-merge rows of ``winner_id`` that belong to ``loser_id``; True if any arrived."""
    arrived = _sort_identifiers(shop_id, winner_id, loser_id, watermark.get("identifiers", 0))
    db.session.flush()
    loser_keys = set(_owned(shop_id, loser_id))
    winner_keys = set(_owned(shop_id, winner_id))
    for event in _new_rows(Event, shop_id, winner_id, watermark.get("events", 0)):
        arrived += 1
        for key in _event_keys(event.identifiers):
            if key in loser_keys or key in winner_keys:
                if key in loser_keys:
                    event.profile_id = loser_id
                break
    for order in _new_rows(Order, shop_id, winner_id, watermark.get("orders", 0)):
        arrived += 1
        keys = {("email", (order.email or "").strip().lower()), ("phone", order.phone or "")}
        if keys & loser_keys and not keys & winner_keys:
            order.profile_id = loser_id
    loser_values = {v for _k, v in loser_keys}
    winner_values = {v for _k, v in winner_keys}
    for record in _new_rows(ConsentRecord, shop_id, winner_id, watermark.get("consent_records", 0)):
        arrived += 1
        value = (record.identifier or "").split(":", 1)[-1].strip().lower()
        if value in loser_values and value not in winner_values:
            record.profile_id = loser_id
    db.session.flush()
    return arrived > 0
