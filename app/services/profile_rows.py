"""Every row that belongs to a profile, found from the schema, and kept as JSON.

Merges move a profile's rows and undo puts them back; both ask this module
which tables point at ``profiles.id`` rather than keeping a list, so a
table another feature adds (segment memberships, GDPR requests…) moves
with the profile without anyone remembering to say so.
"""

from __future__ import annotations

import base64
import datetime as dt
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from app.extensions import db

# Review history, not profile state: never moved by a merge.
HISTORY_TABLES = frozenset({"profiles", "merges", "merge_candidates"})
# Read models rebuilt from other rows after a merge; snapshotted whole for undo.
DERIVED_TABLES = frozenset({"engagement_counters", "consent_states"})


_REFERENCING: dict[tuple[str, ...], list[tuple[sa.Table, sa.Column]]] = {}


def referencing_columns() -> list[tuple[sa.Table, sa.Column]]:
    """``(table, column)`` for every column holding a profile id, history tables aside.

    Cached per set of tables: sorting the metadata costs about a millisecond,
    and a merge asks several times.
    """
    key = tuple(db.metadata.tables)
    if key not in _REFERENCING:
        _REFERENCING[key] = _find_referencing_columns()
    return _REFERENCING[key]


def _find_referencing_columns() -> list[tuple[sa.Table, sa.Column]]:
    found = []
    for table in db.metadata.sorted_tables:
        if table.name in HISTORY_TABLES:
            continue
        for column in table.columns:
            # A composite key (shop_id, profile_id) also points shop_id at profiles.shop_id: not a profile id.
            if any(
                fk.column.table.name == "profiles" and fk.column.name == "id" for fk in column.foreign_keys
            ):
                found.append((table, column))
    return found


def unique_groups(table: sa.Table, column: sa.Column) -> list[list[str]]:
    """The unique constraints of ``table`` that include ``column`` (other column names)."""
    groups = []
    for constraint in table.constraints:
        if isinstance(constraint, sa.UniqueConstraint) and column.name in constraint.columns:
            groups.append([c.name for c in constraint.columns if c.name != column.name])
    return groups


def to_json(table: sa.Table, row: dict[str, Any]) -> dict[str, Any]:
    """A row as JSON-safe values."""
    out = {}
    for name, value in row.items():
        if isinstance(value, dt.datetime | dt.date):
            value = value.isoformat()
        elif isinstance(value, Decimal):
            value = str(value)
        elif isinstance(value, bytes | memoryview):
            value = base64.b64encode(bytes(value)).decode()
        out[name] = value
    return out


def from_json(table: sa.Table, data: dict[str, Any]) -> dict[str, Any]:
    """Undo ``to_json`` using the column types of ``table``."""
    out = {}
    for name, value in data.items():
        column = table.columns[name]
        if value is not None:
            python_type = _python_type(column)
            if python_type is dt.datetime:
                value = dt.datetime.fromisoformat(value)
            elif python_type is dt.date:
                value = dt.date.fromisoformat(value)
            elif python_type is Decimal:
                value = Decimal(value)
            elif python_type is bytes:
                value = base64.b64decode(value)
        out[name] = value
    return out


def _python_type(column: sa.Column):
    type_ = column.type
    if isinstance(type_, sa.types.TypeDecorator):
        type_ = type_.impl_instance
    try:
        return type_.python_type
    except NotImplementedError:
        return None


def select_rows(table: sa.Table, where) -> list[dict[str, Any]]:
    """Rows of ``table`` matching ``where``, as dicts ordered by id."""
    order = table.c.id if "id" in table.c else list(table.primary_key.columns)[0]
    return [dict(r._mapping) for r in db.session.execute(sa.select(table).where(where).order_by(order))]


def delete_rows(table: sa.Table, where) -> list[dict[str, Any]]:
    """Delete the rows of ``table`` matching ``where``; return them as ``select_rows`` would.

    One ``DELETE … RETURNING`` rather than a SELECT then a DELETE.
    """
    order = "id" if "id" in table.c else list(table.primary_key.columns)[0].name
    rows = [dict(r._mapping) for r in db.session.execute(sa.delete(table).where(where).returning(*table.c))]
    return sorted(rows, key=lambda r: r[order])


def dump_profiles(shop_id: int, profile_ids: list[int]) -> dict[str, list[dict[str, Any]]]:
    """Every row of these profiles (their own rows and every row pointing at them)."""
    profiles = db.metadata.tables["profiles"]
    dump = {"profiles": select_rows(profiles, profiles.c.id.in_(profile_ids))}
    for table, column in referencing_columns():
        rows = select_rows(table, sa.and_(table.c.shop_id == shop_id, column.in_(profile_ids)))
        dump[f"{table.name}.{column.name}"] = rows
    return dump
