"""Identity resolution: which profile a set of identifiers seen together belongs to.

``resolve`` is the one entry point ingest calls. This first version links
identifiers to the profile that already holds the most trusted of them
and creates a profile when none does; merging and merge candidates are
added by the identity work (issue 4) behind the same signature.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

import sqlalchemy as sa

from app.extensions import db
from app.models import Identifier, Profile, Shop
from app.services.identifiers import TRUST, Ident, live_profile
from app.services.shop_settings import effective_settings

DEFAULT_BLOCKED = frozenset({"test@test.com", "0000000000", "1234567890", "+10000000000"})


def is_blocked(shop: Shop, ident: Ident) -> bool:
    """Junk values that must never link anyone."""
    blocked = DEFAULT_BLOCKED | {v.lower() for v in effective_settings(shop)["identity"]["blocked_values"]}
    value = ident.value.lower()
    if value in blocked:
        return True
    if ident.kind == "email":
        local, _, domain = value.partition("@")
        return domain in {"example.com", "example.org"} or local.startswith(("noreply", "no-reply"))
    return False


def resolve(
    shop: Shop,
    idents: Iterable[Ident],
    *,
    source: str,
    seen_at: dt.datetime,
    evidence: dict | None = None,
) -> Profile | None:
    """Return the profile these identifiers belong to, linking any new ones.

    Args:
        idents: identifiers seen together in one signal (already normalised).
        source: where they were seen (``shopify``, ``pixel``, ``whatsapp``…).
        seen_at: when the signal happened.
        evidence: what to show a reviewer if the link is doubtful.

    Returns:
        The profile, or None when no usable identifier was given.
    """
    usable = sorted(
        {i for i in idents if i.kind != "raw_phone" and not is_blocked(shop, i)},
        key=lambda i: (TRUST[i.kind], i.value),
    )
    if not usable:
        return None
    rows = {
        (r.kind, r.value): r
        for r in db.session.scalars(
            sa.select(Identifier).where(
                Identifier.shop_id == shop.id,
                sa.tuple_(Identifier.kind, Identifier.value).in_([(i.kind, i.value) for i in usable]),
            )
        )
    }
    owner = None
    for ident in usable:
        row = rows.get((ident.kind, ident.value))
        if row is not None:
            owner = live_profile(db.session.get(Profile, row.profile_id))
            break
    if owner is None:
        owner = Profile(shop_id=shop.id, first_seen_at=seen_at, last_seen_at=seen_at)
        db.session.add(owner)
        db.session.flush()
    for ident in usable:
        row = rows.get((ident.kind, ident.value))
        if row is None:
            db.session.add(
                Identifier(
                    shop_id=shop.id,
                    profile_id=owner.id,
                    kind=ident.kind,
                    value=ident.value,
                    source=source,
                    first_seen_at=seen_at,
                    last_seen_at=seen_at,
                )
            )
        elif row.last_seen_at < seen_at:
            row.last_seen_at = seen_at
    if owner.last_seen_at is None or owner.last_seen_at < seen_at:
        owner.last_seen_at = seen_at
    if owner.first_seen_at is None or owner.first_seen_at > seen_at:
        owner.first_seen_at = seen_at
    db.session.flush()
    return owner
