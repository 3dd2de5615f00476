"""One page of a profile's rows, newest first: the customer page's timeline and orders share it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app.extensions import db
from app.tenancy import scoped


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
    number = max(page, 0)
    rows = db.session.scalars(
        scoped(model, shop_id)
        .where(model.profile_id == profile_id)
        .order_by(time_column.desc(), model.id.desc())
        .offset(number * size)
        .limit(size + 1)
    ).all()
    return Page(rows=list(rows[:size]), number=number, has_next=len(rows) > size)
