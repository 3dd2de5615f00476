"""A channel's opt-out naming an address reaches whoever holds the address.

An unsubscribe of an email, a STOP from a phone, blocks that address whoever
holds it. Two moments need it, one rule serves both (``copy_to_holders``):

* a new opt-out names an address its profile does not hold: two Shopify
  customers on one household phone stay two profiles, one holding the phone,
  and a Shopify SMS unsubscribe for the other names the phone
  (``share_with_holders``, when records are appended);
* a late signal moves the address to another customer: the opt-out filed with
  the old holder must not leave it open to be messaged
  (``resolution._rehome_events``, at a re-partition).

The opt-out is copied, not moved: the person it was sent for said it too (as
undo keeps an opt-out on both sides). Only an explicit opt-out is: a state
restated without a date (Shopify's "not subscribed"), an import or a sync says
nothing about the address. Only the channel's own kind of address counts (an
email opt-out naming a phone blocks no phone). Opt-ins and unsubscribes from
everything stay the person's own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import sqlalchemy as sa

from app.extensions import db
from app.models import ConsentRecord, Identifier, Shop
from app.services.consent import ADDRESS_KIND, OPTED_OUT
from app.services.identifiers import contact_key

Key = tuple[str, str]


def addressed(records: Iterable[ConsentRecord], country: str | None) -> list[tuple[ConsentRecord, Key]]:
    """The explicit channel opt-outs among ``records`` that name their channel's kind of address,
    each with that address as an identifier key."""
    out = []
    for record in records:
        if record.status != OPTED_OUT or not record.explicit or record.channel not in ADDRESS_KIND:
            continue
        key = contact_key(record.identifier, country) if record.identifier else None
        if key is not None and key[0] == ADDRESS_KIND[record.channel]:
            out.append((record, key))
    return out


def copy_to_holders(
    records: Iterable[ConsentRecord], country: str | None, holder_of: Callable[[Key], int | None]
) -> set[int]:
    """Copy each addressed opt-out to its address's holder (``holder_of``) where that is another
    profile, once however often asked; the profiles that received one (their states need refreshing)."""
    from app.services.arrivals import copy_record

    records = list(records)
    held = {_same_record(r) for r in records}
    received: set[int] = set()
    for record, key in addressed(records, country):
        target = holder_of(key)
        if target is None or target == record.profile_id or _same_record(record, target) in held:
            continue
        copy_record(record, target)
        held.add(_same_record(record, target))
        received.add(target)
    return received


def share_with_holders(shop_id: int, records: Iterable[ConsentRecord]) -> set[int]:
    """``copy_to_holders`` for records just appended, their addresses' holders read from the database."""
    records = [r for r in records if r.profile_id is not None]
    if not any(r.status == OPTED_OUT and r.explicit and r.identifier for r in records):
        return set()
    country = db.session.get(Shop, shop_id).country
    wanted = sorted({key for _record, key in addressed(records, country)})
    if not wanted:
        return set()
    holders = dict(
        ((kind, value), pid)
        for kind, value, pid in db.session.execute(
            sa.select(Identifier.kind, Identifier.value, Identifier.profile_id).where(
                Identifier.shop_id == shop_id, sa.tuple_(Identifier.kind, Identifier.value).in_(wanted)
            )
        )
    )
    received = copy_to_holders(records, country, holders.get)
    if received:
        db.session.flush()
    return received


def _same_record(record: ConsentRecord, profile_id: int | None = None) -> tuple:
    """What makes two records one opt-out: copied again at each re-partition, it is kept once."""
    pid = record.profile_id if profile_id is None else profile_id
    return (pid, record.channel, record.identifier, record.captured_at, record.source, record.external_ref)
