"""Finding profiles: search by name, email, phone or order number, keyset-paginated."""

from __future__ import annotations

import re
from dataclasses import dataclass

import sqlalchemy as sa

from app.digits import whole_number
from app.extensions import db
from app.models import Identifier, Order, Profile
from app.services.identifiers import normalise_phone
from app.services.paging import MAX_OFFSET
from app.tenancy import scoped

PAGE_SIZE = 25
SORTS = {
    "recent": (Profile.id.desc(),),
    "ltv": (Profile.lifetime_spend.desc(), Profile.id.desc()),
    "last_order": (Profile.last_order_at.desc().nulls_last(), Profile.id.desc()),
}


@dataclass
class Page:
    """One page of results and the cursor of the next page (None at the end)."""

    items: list[Profile]
    next_cursor: str | None
    offset: int


def _matches(shop_id: int, q: str, region: str | None):
    """A WHERE clause for profiles matching ``q`` on name, identifiers or order number."""
    needle = q.strip().lower()
    digits = re.sub(r"\D", "", needle)
    # autoescape: "%" and "_" typed in the box are text, not LIKE wildcards ("ann_lee" is not "annXlee").
    ident = sa.select(Identifier.profile_id).where(
        Identifier.shop_id == shop_id, Identifier.value.contains(needle, autoescape=True)
    )
    # Search texts are case-folded ("groß" as "gross"); rows written before that are lower-cased.
    folded = q.strip().casefold()
    clauses = [
        *(Profile.search_text.contains(n, autoescape=True) for n in dict.fromkeys((folded, needle))),
        Profile.id.in_(ident),
    ]
    phone = normalise_phone(q, region) if len(digits) >= 6 else None
    if phone is not None and phone.kind == "phone":
        clauses.append(
            Profile.id.in_(
                sa.select(Identifier.profile_id).where(
                    Identifier.shop_id == shop_id, Identifier.kind == "phone", Identifier.value == phone.value
                )
            )
        )
    if len(digits) >= 6:
        clauses.append(
            Profile.id.in_(
                sa.select(Identifier.profile_id).where(
                    Identifier.shop_id == shop_id,
                    Identifier.kind == "phone",
                    Identifier.value.like(f"%{digits}%"),
                )
            )
        )
    number = needle.lstrip("#")
    if number:
        clauses.append(
            Profile.id.in_(
                sa.select(Order.profile_id).where(
                    Order.shop_id == shop_id,
                    sa.or_(Order.number == number, Order.number == f"#{number}"),
                )
            )
        )
    return sa.or_(*clauses)


def search_profiles(
    shop_id: int,
    q: str = "",
    *,
    cursor: str | None = None,
    limit: int = PAGE_SIZE,
    sort: str = "recent",
    filters: list | None = None,
    region: str | None = None,
) -> Page:
    """Return one page of a shop's live (not merged-away, not erased) profiles.

    Args:
        q: free text; empty lists everyone.
        cursor: opaque position returned by the previous page.
        sort: ``recent``, ``ltv`` or ``last_order``.
        filters: extra SQLAlchemy criteria on ``Profile`` (stage, RFM, churn band…).
        region: the shop's country, to read national-format phone numbers.
    """
    offset = min(whole_number(cursor or "") or 0, MAX_OFFSET)
    stmt = scoped(Profile, shop_id).where(Profile.is_live())
    if q.strip():
        stmt = stmt.where(_matches(shop_id, q, region))
    if filters:
        stmt = stmt.where(*filters)
    stmt = stmt.order_by(*SORTS.get(sort, SORTS["recent"])).offset(offset).limit(limit + 1)
    rows = list(db.session.scalars(stmt))
    more = len(rows) > limit
    return Page(rows[:limit], str(offset + limit) if more else None, offset)


def identifiers_by_profile(shop_id: int, profile_ids: list[int]) -> dict[int, dict[str, list[str]]]:
    """``{profile_id: {kind: [values]}}`` for a page of profiles, in one query."""
    out: dict[int, dict[str, list[str]]] = {pid: {} for pid in profile_ids}
    if not profile_ids:
        return out
    stmt = (
        scoped(Identifier, shop_id)
        .where(Identifier.profile_id.in_(profile_ids))
        .order_by(Identifier.kind, Identifier.value)
    )
    for ident in db.session.scalars(stmt):
        out[ident.profile_id].setdefault(ident.kind, []).append(ident.value)
    return out
