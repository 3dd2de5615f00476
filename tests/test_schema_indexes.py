"""Indexes the schema keeps: one to follow every foreign key, none that another already covers.

A delete makes the database look up the rows pointing at the deleted row; without an
index leading with the foreign key that is a scan of every shop's rows per row deleted
(an erasure, a shop's removal). An index on ``shop_id`` alone beside one that leads
with ``shop_id`` answers nothing more and costs every insert.
"""

from __future__ import annotations

import sqlalchemy as sa

from app.extensions import db


def _leading_columns(table: sa.Table) -> list[list[str]]:
    """The column lists of the table's full (not partial) indexes, primary key and unique constraints."""
    out = [
        [c.name for c in ix.columns]
        for ix in table.indexes
        if ix.dialect_options["postgresql"].get("where") is None
        and ix.dialect_options["sqlite"].get("where") is None
    ]
    out += [
        [c.name for c in con.columns]
        for con in table.constraints
        if isinstance(con, sa.UniqueConstraint | sa.PrimaryKeyConstraint)
    ]
    return out


def test_every_foreign_key_has_an_index_that_leads_with_it(app):
    missing = []
    for table in db.metadata.sorted_tables:
        indexes = _leading_columns(table)
        for key in table.foreign_key_constraints:
            columns = {c.name for c in key.columns}
            # A composite key (shop_id, parent_id) is followed by an index on parent_id too: ids are global.
            wanted = columns - {"shop_id"} or columns
            if not any(set(index[: len(columns)]) == columns or index[0] in wanted for index in indexes):
                missing.append(f"{table.name}({', '.join(sorted(columns))})")
    assert missing == []


def test_no_index_on_shop_id_alone_where_another_leads_with_it(app):
    doubled = [
        table.name
        for table in db.metadata.sorted_tables
        if ["shop_id"] in (indexes := _leading_columns(table))
        and any(len(index) > 1 and index[0] == "shop_id" for index in indexes)
    ]
    assert doubled == []
