"""Finding profiles by name, email, phone or order number: keyset pages (API), offset pages (console)."""

from __future__ import annotations

import re
from dataclasses import dataclass

import sqlalchemy as sa

from app.digits import whole_number
from app.extensions import db
from app.models import Identifier, Order, Profile
from app.search_fold import fold
from app.services.identifiers import normalise_phone
from app.services.paging import MAX_OFFSET
from app.services.search_cursor import decode_cursor, encode_cursor
from app.tenancy import scoped

PAGE_SIZE = 25
SORTS = {
    "recent": (Profile.id.desc(),),
    "ltv": (Profile.lifetime_spend.desc(), Profile.id.desc()),
    "last_order": (Profile.last_order_at.desc().nulls_last(), Profile.id.desc()),
}


@dataclass
class Page:
    """One page of results and the opaque cursor of the next page (None at the end)."""

    items: list[Profile]
    next_cursor: str | None


@dataclass
class OffsetPage:
    """One page of the console's list, its offset, and the next page's offset as text (None at the end)."""

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
    # Search texts are folded ("zoë groß" as "zoe gross", see ``search_fold``).
    folded = fold(q.strip())
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


def _live_matching(shop_id: int, q: str, filters: list | None, region: str | None) -> sa.Select:
    """The shop's live (not merged-away, not erased) profiles matching ``q`` and ``filters``."""
    stmt = scoped(Profile, shop_id).where(Profile.is_live())
    if q.strip():
        stmt = stmt.where(_matches(shop_id, q, region))
    if filters:
        stmt = stmt.where(*filters)
    return stmt


def search_profiles(
    shop_id: int,
    q: str = "",
    *,
    cursor: str | None = None,
    limit: int = PAGE_SIZE,
    region: str | None = None,
) -> Page:
    """Return one page of a shop's live profiles, newest first, keyset-paginated.

    The next page starts after the last row's id rather than at an offset: profiles
    created between two fetches sort before the cursor and profiles merged away
    leave no hole, so no row that existed at the first fetch repeats or is skipped.

    Args:
        q: free text; empty lists everyone.
        cursor: ``next_cursor`` of the previous page; empty or None starts at the first.
        region: the shop's country, to read national-format phone numbers.

    Raises:
        BadCursor: ``cursor`` is not one this function handed out.
    """
    stmt = _live_matching(shop_id, q, None, region)
    if cursor:
        stmt = stmt.where(Profile.id < decode_cursor(cursor))
    rows = list(db.session.scalars(stmt.order_by(*SORTS["recent"]).limit(limit + 1)))
    more = len(rows) > limit
    return Page(rows[:limit], encode_cursor(rows[limit - 1].id) if more else None)


def search_profiles_by_offset(
    shop_id: int,
    q: str = "",
    *,
    cursor: str | None = None,
    limit: int = PAGE_SIZE,
    sort: str = "recent",
    filters: list | None = None,
    region: str | None = None,
) -> OffsetPage:
    """Return one page of the console's customer list, which pages by row offset.

    The console sorts by spend and last order too, keys that move as orders arrive, and
    links its first page by offset; a person re-reads a list, a client looping an export
    does not. The API pages with ``search_profiles``.

    Args:
        q: free text; empty lists everyone.
        cursor: the offset as ASCII digits; anything else reads the first page.
        sort: ``recent``, ``ltv`` or ``last_order``.
        filters: extra SQLAlchemy criteria on ``Profile`` (stage, RFM, churn band…).
        region: the shop's country, to read national-format phone numbers.
    """
    offset = min(whole_number(cursor or "") or 0, MAX_OFFSET)
    stmt = _live_matching(shop_id, q, filters, region)
    stmt = stmt.order_by(*SORTS.get(sort, SORTS["recent"])).offset(offset).limit(limit + 1)
    rows = list(db.session.scalars(stmt))
    more = len(rows) > limit
    return OffsetPage(rows[:limit], str(offset + limit) if more else None, offset)


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
