"""One page of a profile's rows, newest first: the customer page's timeline and orders share it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app.extensions import db
from app.tenancy import scoped

# Past any shop's rows: a page or cursor beyond it reads an empty page (PostgreSQL refuses
# an OFFSET past BIGINT, and a link can carry any number).
MAX_OFFSET = 2**62


@dataclass
class Page:
    """The rows of one page, its (clamped) number, and whether a next page exists."""

    rows: list[Any]
    number: int
    has_next: bool


def newest_first(model, shop_id: int, profile_id: int, time_column, page: int, size: int) -> Page:
    """Page ``page`` of the profile's ``model`` rows by ``time_column`` then id, descending.

    Reads one row past the page to know whether there is a next one, without a count.
    """
    number = min(max(page, 0), MAX_OFFSET // size)
    rows = db.session.scalars(
        scoped(model, shop_id)
        .where(model.profile_id == profile_id)
        .order_by(time_column.desc(), model.id.desc())
        .offset(number * size)
        .limit(size + 1)
    ).all()
    return Page(rows=list(rows[:size]), number=number, has_next=len(rows) > size)
