"""Primary keys drawn ahead from the tables' sequences, a block at a time (PostgreSQL).

Resolution makes profiles, identifiers and links as it goes, and the walks
and re-partitions that follow name them by id. Without an id until its
INSERT, each new row forced a flush of the whole session: in an ingest
batch about one flush for every six signals, each writing the timestamps
the signals before it had changed, one UPDATE per row. With ids drawn ahead
a new row is named when it is made, and the session's changes go out
together when a query or a merge needs them, or at the end of the batch.

A drawn id that goes unused is a gap in the sequence, as a rolled-back
INSERT leaves. SQLite has no sequences: there ``next`` gives None and a row
is named by its INSERT, as before.
"""

from __future__ import annotations

import sqlalchemy as sa

from app.services.bulk_sql import draw_ids, is_postgresql

BLOCK = 64


class IdBlocks:
    """Ids for new rows of several tables, drawn ``BLOCK`` at a time on one connection."""

    def __init__(self, block: int = BLOCK):
        self.block = block
        self.enabled = is_postgresql()
        self.drawn: dict[str, list[int]] = {}

    def next(self, table: sa.Table) -> int | None:
        """A fresh id for ``table``, or None where the database names rows itself (SQLite)."""
        if not self.enabled:
            return None
        ids = self.drawn.get(table.name)
        if not ids:
            ids = self.drawn[table.name] = draw_ids(table, self.block)[::-1]
        return ids.pop()
