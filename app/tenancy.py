"""The one way to query shop-owned rows: every select goes through ``scoped``.

Keeping the ``shop_id`` filter in one helper is what lets the tenancy tests
trust every screen and API call, and what makes distributing tables by
shop (Citus-style) a deployment choice rather than a rewrite.
"""

from __future__ import annotations

from typing import TypeVar

import sqlalchemy as sa
from werkzeug.routing import IntegerConverter

from app.errors import NotFound
from app.extensions import db

T = TypeVar("T")
# Ids are BIGINT: a larger number names no row (and PostgreSQL refuses to compare with it).
MAX_ROW_ID = 2**63 - 1


class RowIdConverter(IntegerConverter):
    """``<int:…>`` in routes: a number past ``MAX_ROW_ID`` does not match, so it is a 404, not a 500."""

    def __init__(self, map, *args, **kwargs):
        kwargs.setdefault("max", MAX_ROW_ID)
        super().__init__(map, *args, **kwargs)


def could_be_row_id(value) -> bool:
    """False for a number no BIGINT id holds (PostgreSQL refuses even to compare with one)."""
    return not isinstance(value, int) or -MAX_ROW_ID <= value <= MAX_ROW_ID


def scoped(model: type[T], shop_id: int, *columns) -> sa.Select:
    """Return ``SELECT model`` (or the given columns) limited to one shop."""
    if not hasattr(model, "shop_id"):
        raise TypeError(f"{model.__name__} is not shop-owned")
    stmt = sa.select(*columns) if columns else sa.select(model)
    return stmt.where(model.shop_id == shop_id)


def get_scoped(model: type[T], shop_id: int, row_id, *, fresh: bool = False) -> T | None:
    """Load one row by primary key, or None when it is missing or another shop's.

    ``fresh`` reads it from the database even when the session holds it (as it stands
    now, e.g. under a lock taken after the session last read it).
    """
    if not could_be_row_id(row_id):
        return None  # no row has it (a number from a request body)
    row = db.session.get(model, row_id, populate_existing=fresh)
    if row is None or row.shop_id != shop_id:
        return None
    return row


def get_scoped_or_raise(
    model: type[T], shop_id: int, row_id, what: str | None = None, *, fresh: bool = False
) -> T:
    """Load one row of this shop (``get_scoped``) or raise ``NotFound`` (same answer for another shop's)."""
    row = get_scoped(model, shop_id, row_id, fresh=fresh)
    if row is None:
        raise NotFound(f"{what or model.__name__} {row_id} not found")
    return row
