"""Timestamps a batch keeps current in memory and writes together: one UPDATE per table and column set.

A batch of signals moves identifiers', links' and profiles' first and last
seen thousands of times. Left to the ORM, each merge's flush (and the batch's
last one) would write them a row per statement, and most of a merge's flush
was that. Held here, the objects show the new values at once
(``set_committed_value``: nothing is dirty for the ORM) and ``write`` sends
each table's changes as one statement (``bulk_sql.update_rows``).

A row's stamps must be written before anything reads that row back from the
database or reloads it. A merge locks its two profiles with ``populate_existing``
and reads their identifiers' first seen by SQL (to name each side), so
resolution writes the stamps of those two profiles and their identifiers before
each merge (``write(only=…)``), and everything else once, at the end of its
batch. Nothing else of a merge reads them: rows move by id, and a stamp still
pending applies to the row wherever it moved. Writing everything before every
merge instead wrote a busy profile's last seen a dozen times per batch.
A row not inserted yet takes the values on its INSERT instead.
Stamped objects are held until written: the session keeps only weak references
to objects it sees as clean, and a dropped one would come back from the database
without its new values.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm.attributes import set_committed_value

from app.models.base import utcnow
from app.services.bulk_sql import update_rows


class DeferredStamps:
    """The values set on persistent rows and not written yet, by table and row id."""

    def __init__(self) -> None:
        self.pending: dict[sa.Table, dict[int, dict[str, Any]]] = {}
        self.held: dict[tuple[sa.Table, int], Any] = {}

    def set(self, obj, **values: Any) -> None:
        """Set ``values`` on ``obj`` now; write them with the next ``write`` (or its INSERT)."""
        if not sa.inspect(obj).persistent:
            for name, value in values.items():
                setattr(obj, name, value)
            return
        if "updated_at" in obj.__table__.c:
            values["updated_at"] = utcnow()
        for name, value in values.items():
            set_committed_value(obj, name, value)
        self.pending.setdefault(obj.__table__, {}).setdefault(obj.id, {}).update(values)
        self.held[obj.__table__, obj.id] = obj

    def write(self, only: Callable[[Any], bool] | None = None) -> None:
        """Write what is pending (or what ``only`` picks of the stamped objects): one statement per
        table and set of columns."""
        for table, rows in self.pending.items():
            picked = list(rows) if only is None else [i for i in rows if only(self.held[table, i])]
            groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
            for row_id in picked:
                values = rows.pop(row_id)
                del self.held[table, row_id]
                groups.setdefault(tuple(sorted(values)), []).append({"id": row_id, **values})
            for members in groups.values():
                update_rows(table, [{k: m[k] for k in ("id", *sorted(m.keys() - {"id"}))} for m in members])
