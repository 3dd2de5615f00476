"""Timestamps a batch keeps current in memory and writes together: one UPDATE per table and column set.

A batch of signals moves identifiers', links' and profiles' first and last
seen thousands of times. Left to the ORM, each merge's flush (and the batch's
last one) would write them a row per statement, and most of a merge's flush
was that. Held here, the objects show the new values at once
(``set_committed_value``: nothing is dirty for the ORM) and ``write`` sends
each table's changes as one statement (``bulk_sql.update_rows``).

A row's stamps must be written before anything reads that row back from the
database, or be shown on it again after a reload. A merge reads its
identifiers' first seen by SQL (to name each side), so resolution writes a
pending first seen of the pair's identifiers before the merge (rare: a signal
older than what was known); it locks its two profiles with
``populate_existing``, so their pending values are set on them again after the
lock (``reapply``), and taken back from them after the merge, which sets the
survivor's first and last seen from both sides (``adopt``). Everything else is
written once, at the end of the batch. Nothing else of a merge reads them: rows
move by id, and a stamp still pending applies to the row wherever it moved.
Writing everything before every merge instead wrote a busy profile's last seen
a dozen times per batch; writing the pair's stamps before each merge cost a
statement per table and merge.
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

STAMPED = "c360.stamped_profiles"  # session.info key: profiles whose first or last seen moved here
STAMPED_NEW = "c360.stamped_new_profiles"  # the same for profiles not inserted yet when stamped


def stamped_profiles(session) -> dict[int, Any]:
    """The profiles whose stamps moved in ``session`` since the last call, by id (and forget them).

    Their first and last seen decide their lifecycle stage, and nothing marks them changed for
    the ORM: the ingest paths read them here to keep the stage current. That holds for a profile
    the batch made too (two visits of a new visitor on two days): written clean by a flush before
    the batch looks, it would stay "new". A profile with no id yet waits for the next call.
    """
    found, waiting = session.info.pop(STAMPED, {}), {}
    for key, profile in session.info.pop(STAMPED_NEW, {}).items():
        if profile.id is None:
            waiting[key] = profile
        else:
            found.setdefault(profile.id, profile)
    if waiting:
        session.info[STAMPED_NEW] = waiting
    return found


def stamped_unnamed(session) -> bool:
    """Whether a profile stamped before its INSERT has no id yet (SQLite names rows by inserting)."""
    return any(p.id is None for p in session.info.get(STAMPED_NEW, {}).values())


class DeferredStamps:
    """The values set on persistent rows and not written yet, by table and row id."""

    def __init__(self) -> None:
        self.pending: dict[sa.Table, dict[int, dict[str, Any]]] = {}
        self.held: dict[tuple[sa.Table, int], Any] = {}

    def set(self, obj, **values: Any) -> None:
        """Set ``values`` on ``obj`` now; write them with the next ``write`` (or its INSERT)."""
        state = sa.inspect(obj)
        if not state.persistent:
            for name, value in values.items():
                setattr(obj, name, value)
            if obj.__table__.name == "profiles" and state.session is not None:
                state.session.info.setdefault(STAMPED_NEW, {})[id(obj)] = obj
            return
        if "updated_at" in obj.__table__.c:
            values["updated_at"] = utcnow()
        for name, value in values.items():
            set_committed_value(obj, name, value)
        if obj.__table__.name == "profiles":
            sa.inspect(obj).session.info.setdefault(STAMPED, {})[obj.id] = obj
        self.pending.setdefault(obj.__table__, {}).setdefault(obj.id, {}).update(values)
        self.held[obj.__table__, obj.id] = obj

    def write(self, only: Callable[[Any, dict[str, Any]], bool] | None = None) -> None:
        """Write what is pending (or what ``only`` picks, given the object and its pending values):
        one statement per table and set of columns."""
        for table, rows in self.pending.items():
            picked = list(rows) if only is None else [i for i in rows if only(self.held[table, i], rows[i])]
            groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
            for row_id in picked:
                values = rows.pop(row_id)
                del self.held[table, row_id]
                groups.setdefault(tuple(sorted(values)), []).append({"id": row_id, **values})
            for members in groups.values():
                update_rows(table, [{k: m[k] for k in ("id", *sorted(m.keys() - {"id"}))} for m in members])

    def reapply(self, obj) -> None:
        """Show ``obj``'s pending values on it again: a reload from the database (``populate_existing``)
        replaced them with the stored ones, and they stay pending."""
        for name, value in self.pending.get(obj.__table__, {}).get(obj.id, {}).items():
            set_committed_value(obj, name, value)

    def adopt(self, obj) -> None:
        """Make ``obj``'s values now its pending ones: whoever changed it since (a merge sets its
        survivor's first and last seen) knew the pending values, and the write must not undo that.

        A value a flush expired (``updated_at``) is no longer pending: the database has the newer one.
        """
        values = self.pending.get(obj.__table__, {}).get(obj.id)
        if values is None:
            return
        state = obj.__dict__
        for name in list(values):
            if name in state:
                values[name] = state[name]
            else:
                del values[name]
        if not values:
            del self.pending[obj.__table__][obj.id]
            del self.held[obj.__table__, obj.id]
