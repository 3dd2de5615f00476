"""A channel's opt-out naming an address reaches whoever holds the address.

An unsubscribe of an email, a STOP from a phone, blocks that address whoever
holds it (``resolution._rehome_consents`` copies it when a late signal moves
the address). A new opt-out can also name an address its profile does not
hold: two Shopify customers on one household phone stay two profiles, one
holding the phone, and a Shopify SMS unsubscribe for the other names the
phone. Stored on her profile alone, it left the phone's holder open to be
texted at it. The opt-out is copied to the holder, not moved: the person it
was sent for said it too. Only an explicit opt-out is: a state restated
without a date (Shopify's "not subscribed"), an import or a sync says nothing
about the address. Opt-ins and unsubscribes from everything stay the
person's own.
"""

from __future__ import annotations

from collections.abc import Iterable

import sqlalchemy as sa

from app.extensions import db
from app.models import ConsentRecord, Identifier, Shop
from app.services.consent import ADDRESS_KIND, OPTED_OUT
from app.services.identifiers import contact_key


def share_with_holders(shop_id: int, records: Iterable[ConsentRecord]) -> set[int]:
    """Copy each channel opt-out naming its channel's address to the address's other holder;
    the profiles that received one (their consent states need refreshing)."""
    named = [
        r
        for r in records
        if r.status == OPTED_OUT
        and r.explicit  # the person's word: not a state restated ("not subscribed"), an import, a sync
        and r.identifier
        and r.channel in ADDRESS_KIND
        and r.profile_id is not None
    ]
    if not named:
        return set()
    country = db.session.get(Shop, shop_id).country
    keys = {r.id: contact_key(r.identifier, country) for r in named}
    wanted = {k for r in named if (k := keys[r.id]) is not None and k[0] == ADDRESS_KIND[r.channel]}
    if not wanted:
        return set()
    holders = {
        (kind, value): pid
        for kind, value, pid in db.session.execute(
            sa.select(Identifier.kind, Identifier.value, Identifier.profile_id).where(
                Identifier.shop_id == shop_id,
                sa.tuple_(Identifier.kind, Identifier.value).in_(sorted(wanted)),
            )
        )
    }
    from app.services.arrivals import copy_record

    received = set()
    for record in named:
        key = keys[record.id]
        if key is None or key[0] != ADDRESS_KIND[record.channel]:
            continue  # an email opt-out naming a phone blocks no phone, nor its holder's email
        holder = holders.get(key)
        if holder is not None and holder != record.profile_id:
            copy_record(record, holder)
            received.add(holder)
    if received:
        db.session.flush()
    return received
