"""Timestamps a batch keeps current in memory and writes together: one UPDATE per table and column set.

A batch of signals moves identifiers', links' and profiles' first and last
seen thousands of times. Left to the ORM, each merge's flush (and the batch's
last one) would write them a row per statement, and most of a merge's flush
was that. Held here, the objects show the new values at once
(``set_committed_value``: nothing is dirty for the ORM) and ``write`` sends
each table's changes as one statement (``bulk_sql.update_rows``).

``write`` must run before anything reads those rows back from the database or
reloads them: a merge locks its profiles with ``populate_existing`` and snapshots
rows by SQL, so resolution writes the stamps before every merge and at the end
of its batch. A row not inserted yet takes the values on its INSERT instead.
Stamped objects are held until written: the session keeps only weak references
to objects it sees as clean, and a dropped one would come back from the database
without its new values.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm.attributes import set_committed_value

from app.models.base import utcnow
from app.services.bulk_sql import update_rows


class DeferredStamps:
    """The values set on persistent rows and not written yet, by table and row id."""

    def __init__(self) -> None:
        self.pending: dict[sa.Table, dict[int, dict[str, Any]]] = {}
        self.held: list[Any] = []

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
        self.held.append(obj)

    def write(self) -> None:
        """Write what is pending: one statement per table and set of columns."""
        for table, rows in self.pending.items():
            groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
            for row_id, values in rows.items():
                groups.setdefault(tuple(sorted(values)), []).append({"id": row_id, **values})
            for members in groups.values():
                update_rows(table, [{k: m[k] for k in ("id", *sorted(m.keys() - {"id"}))} for m in members])
        self.pending.clear()
        self.held.clear()
