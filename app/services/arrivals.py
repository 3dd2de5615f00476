"""Rows that reached a survivor after its merge: which side they belong to on undo.

Each goes to the profile that owns its identifiers: a new identifier to
the side it was seen with, an event to the owner of its most trusted
identifier, an order to the owner of the most trusted of its buyer's
identifiers (those its own ``order.placed`` event recorded: a POS sale or
a marketplace order may name its buyer by a Shopify customer id or a
marketplace account alone, and its email and phone), a consent record to
the owner of its identifier, a message to the owner of the address it went
to. The order's and the record's contact are
kept as their source gave them (a phone in national format, an email in
capitals), so they are normalised with the shop's country first. Anything
else stays with the survivor, except an opt-out that names no identifier
(a support agent's "unsubscribe" on the merged profile): the person who
asked may be either side, so both keep it. The names, address and currency a
customer or order version sent meanwhile are given again to the side its event
went to (``details_replay``): undo puts both profiles back as they were at the
merge, which would lose them.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import sqlalchemy as sa

from app.analytics.engagement import is_persons_doing
from app.extensions import db
from app.models import ConsentRecord, Event, Identifier, IdentifierLink, Message, Order, OutboxItem, Shop
from app.services.bulk_sql import id_in
from app.services.consent import OPTED_OUT
from app.services.identifiers import TRUST, contact_key
from app.tenancy import scoped

Key = tuple[str, str]
OrderRef = tuple[str | None, str]  # (channel, order id)
# Events whose delivery is a Shopify version telling the customer's names, address and currency.
DETAILED = frozenset({"customer.created", "customer.updated", "order.placed"})


@dataclass
class Arrivals:
    """What undo found had reached the survivor since the merge.

    ``seen``: per profile, the earliest and latest moment of what the person did among the
    events it now holds (a page view, an order), for its first and last seen times.
    ``versions``: the events of Shopify customer and order versions that arrived (their
    delivery tells the names and address the customer gave then), on the side they went to.
    """

    count: int = 0
    seen: dict[int, tuple[dt.datetime, dt.datetime]] = field(default_factory=dict)
    versions: list[Event] = field(default_factory=list)

    def saw(self, profile_id: int, at: dt.datetime) -> None:
        first, last = self.seen.get(profile_id, (at, at))
        self.seen[profile_id] = (min(first, at), max(last, at))


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


def event_keys(identifiers: dict) -> list[tuple[str, str]]:
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


def most_trusted(keys, owned) -> Key | None:
    """The most trusted of ``keys`` that ``owned`` (a set or a map of identifiers) holds, if any."""
    return next((k for k in sorted(keys, key=lambda k: (TRUST[k[0]], k[1])) if k in owned), None)


def _goes_back(keys, loser_keys: set[Key], winner_keys: set[Key]) -> bool:
    """Whether the most trusted of ``keys`` that either side owns is the merged-away side's."""
    return most_trusted(keys, loser_keys | winner_keys) in loser_keys


def order_of(event: Event) -> OrderRef | None:
    """``(channel, order id)`` of an ``order.placed`` event: the order whose buyer it recorded."""
    if event.type == "order.placed" and isinstance(event.properties, dict):
        return event.channel, str(event.properties.get("order_id"))
    return None


def buyer_keys(order: Order, buyers: dict[OrderRef, list[Key]], country: str | None) -> set[Key]:
    """The identifiers of an order's buyer: those its ``order.placed`` event recorded (``buyers``,
    by ``order_of``) and the order's own contact, normalised with the shop's country."""
    contacts = (
        contact_key(f"{kind}:{text or ''}", country)
        for kind, text in (("email", order.email), ("phone", order.phone))
    )
    return {*buyers.get((order.channel, order.external_id), ()), *filter(None, contacts)}


def sort_arrivals(shop_id: int, winner_id: int, loser_id: int, watermark: dict[str, int]) -> Arrivals:
    """Move post-merge rows of ``winner_id`` that belong to ``loser_id``; say what arrived."""
    country = db.session.get(Shop, shop_id).country
    found = Arrivals(_sort_identifiers(shop_id, winner_id, loser_id, watermark.get("identifiers", 0)))
    db.session.flush()
    loser_keys = set(_owned(shop_id, loser_id))
    winner_keys = set(_owned(shop_id, winner_id))

    buyers: dict[OrderRef, list[Key]] = {}  # (channel, order id): its buyer's identifiers
    for event in _new_rows(Event, shop_id, winner_id, watermark.get("events", 0)):
        found.count += 1
        keys = event_keys(event.identifiers)
        if _goes_back(keys, loser_keys, winner_keys):
            event.profile_id = loser_id
        if (placed := order_of(event)) is not None:
            buyers[placed] = keys
        if is_persons_doing(event.type):
            found.saw(event.profile_id, event.occurred_at)
        if event.type in DETAILED and event.delivery_id is not None:
            found.versions.append(event)
    for order in _new_rows(Order, shop_id, winner_id, watermark.get("orders", 0)):
        found.count += 1
        if _goes_back(buyer_keys(order, buyers, country), loser_keys, winner_keys):
            order.profile_id = loser_id
    found.count += _sort_messages(
        shop_id, winner_id, loser_id, watermark.get("messages", 0), (loser_keys, winner_keys)
    )
    for record in _new_rows(ConsentRecord, shop_id, winner_id, watermark.get("consent_records", 0)):
        found.count += 1
        key = contact_key(record.identifier, country)
        if key is None and record.status == OPTED_OUT:
            copy_record(record, loser_id)
        elif key in loser_keys and key not in winner_keys:
            record.profile_id = loser_id
    db.session.flush()
    return found


def _sort_messages(shop_id: int, winner_id: int, loser_id: int, watermark: int, keys) -> int:
    """A message sent to the merged profile goes back with the address it went to (its outbox
    recipient): its daily cap, its fatigue and an unsubscribe from it are that person's. Returns
    how many messages arrived."""
    from app.services.messaging import RECIPIENT_KIND

    loser_keys, winner_keys = keys
    sent = _new_rows(Message, shop_id, winner_id, watermark)
    if not sent:
        return 0
    recipients = dict(
        db.session.execute(
            sa.select(OutboxItem.message_id, OutboxItem.recipient).where(
                OutboxItem.shop_id == shop_id, id_in(OutboxItem.message_id, [m.id for m in sent])
            )
        ).all()
    )
    for message in sent:
        address = (RECIPIENT_KIND.get(message.channel), recipients.get(message.id))
        if address in loser_keys and address not in winner_keys:
            message.profile_id = loser_id
    return len(sent)


def copy_record(record: ConsentRecord, profile_id: int) -> None:
    """The same opt-out on ``profile_id`` too: the survivor's copy stays, history is never rewritten."""
    columns = {c.key: getattr(record, c.key) for c in ConsentRecord.__table__.columns if c.key != "id"}
    db.session.add(ConsentRecord(**{**columns, "profile_id": profile_id}))
