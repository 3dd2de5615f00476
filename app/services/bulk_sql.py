"""Bulk SQL that stays cheap for long lists: ``IN`` over many ids, many-row inserts.

On PostgreSQL a list becomes one array parameter per column (``= ANY(:ids)``,
``INSERT … SELECT unnest(:col1), unnest(:col2) …``): the statement text and
plan are the same for every size, and the driver neither binds thousands of
parameters nor sends one statement per row. SQLite keeps ``IN`` and
``executemany``, which are already cheap in-process.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from app.extensions import db
from app.models.base import JsonDoc, UTCDateTime

# Rows per SQLite executemany of ``copy_rows``: a bound on what a long insert holds converted at once.
SQLITE_CHUNK = 10_000


def is_postgresql() -> bool:
    """True when the session talks to PostgreSQL."""
    return db.session.get_bind().dialect.name == "postgresql"


class IdList(sa.types.TypeDecorator):
    """PostgreSQL ``bigint[]`` sent as one ``{1,2,3}`` literal: a C-speed join, not a per-item dump.

    The parameter reaches the server untyped and is parsed once as the array it is cast to (a
    ``text`` parameter would be converted at run time, per row of a sequential scan).
    """

    impl = postgresql.ARRAY(sa.BigInteger())
    cache_ok = True

    def bind_processor(self, dialect):
        def process(value):
            return None if value is None else "{" + ",".join(map(str, map(int, value))) + "}"

        return process


def _array_element(value: Any) -> str:
    if value is None:
        return "NULL"
    text = value.isoformat() if hasattr(value, "isoformat") else str(value)
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


class ArrayLiteral(sa.types.TypeDecorator):
    """PostgreSQL ``<item>[]`` (text, dates, timestamps) sent as one ``{"a",NULL}`` literal, as ``IdList``.

    Parsed once on the server as the array it is cast to: for a column of a few thousand rows,
    several times cheaper on both sides than the same values as JSON records.
    """

    impl = postgresql.ARRAY(sa.Text())
    cache_ok = True

    def __init__(self, item_type: sa.types.TypeEngine):
        super().__init__()
        self.item_type = item_type

    def load_dialect_impl(self, dialect):
        return dialect.type_descriptor(postgresql.ARRAY(self.item_type))

    def bind_processor(self, dialect):
        def process(value):
            return None if value is None else "{" + ",".join(map(_array_element, value)) + "}"

        return process


def id_array(name: str | None = None, ids: Sequence[int] | None = None):
    """PostgreSQL: a ``bigint[]`` bind parameter (named ``name``, or anonymous with ``ids``)."""
    return sa.bindparam(name, ids, type_=IdList())


def id_in(column, ids: Sequence[int]):
    """A predicate: ``column`` is one of ``ids``."""
    if len(ids) == 1:
        return column == ids[0]
    if is_postgresql():
        return column == sa.any_(id_array(ids=list(ids)))
    return column.in_(ids)


def value_in(column, values: Sequence[Any]):
    """A predicate: ``column`` (text, dates) is one of ``values``; one array parameter on PostgreSQL."""
    if len(values) == 1:
        return column == values[0]
    if is_postgresql():
        return column == sa.any_(sa.bindparam(None, list(values), type_=ArrayLiteral(column.type)))
    return column.in_(values)


def _unnest(column: sa.Column, values: list[Any]):
    if all(v == values[0] for v in values):
        # A column with one value for every row (shop, channel, time…) binds one scalar, not an array.
        if isinstance(column.type, JsonDoc):
            return sa.cast(sa.bindparam(None, json.dumps(values[0]), type_=sa.Text()), postgresql.JSONB)
        return sa.cast(sa.bindparam(None, values[0], type_=column.type), column.type)
    if isinstance(column.type, JsonDoc):
        param = sa.bindparam(None, [json.dumps(v) for v in values], type_=postgresql.ARRAY(sa.Text()))
        return sa.cast(sa.func.unnest(param), postgresql.JSONB)
    return sa.func.unnest(sa.bindparam(None, values, type_=array_of(column)))


def array_of(column: sa.Column) -> postgresql.ARRAY:
    """PostgreSQL: the array type that binds a list of ``column``'s values (for ``unnest``)."""
    item_type = sa.DateTime(timezone=True) if isinstance(column.type, UTCDateTime) else column.type
    return postgresql.ARRAY(item_type)


def unnest_select(table: sa.Table, rows: list[dict[str, Any]]) -> tuple[list[str], sa.Select]:
    """PostgreSQL: the rows as ``SELECT unnest(:col1), …`` (one array parameter per column)."""
    names = list(rows[0])
    return names, sa.select(*(_unnest(table.c[n], [r[n] for r in rows]).label(n) for n in names))


def _insert_from_arrays(table: sa.Table, rows: list[dict[str, Any]]) -> postgresql.Insert:
    """PostgreSQL: ``INSERT … SELECT unnest(:col1), …``, one array parameter per column."""
    names, source = unnest_select(table, rows)
    return postgresql.insert(table).from_select(names, source)


def insert_rows(table: sa.Table, rows: list[dict[str, Any]], returning: Sequence[str] = ()) -> list:
    """Insert rows that share their keys; return the ``returning`` columns (in no promised order)."""
    if not rows:
        return []
    if not is_postgresql():
        stmt = sa.insert(table)
        if returning:
            stmt = stmt.returning(*(table.c[c] for c in returning), sort_by_parameter_order=True)
            return db.session.execute(stmt, rows).all()
        defaults = _python_defaults(table, list(rows[0]))
        if defaults is None:
            db.session.execute(sa.insert(table), rows)  # a SQL default: let SQLAlchemy render it
        else:
            _sqlite_executemany(table, rows, defaults)
        return []
    stmt = _insert_from_arrays(table, rows)
    if returning:
        return db.session.execute(stmt.returning(*(table.c[c] for c in returning))).all()
    db.session.execute(stmt)
    return []


def update_rows(table: sa.Table, rows: list[dict[str, Any]], key: str = "id") -> None:
    """Set each row's values by its ``key``; the rows share their keys. One statement on PostgreSQL.

    PostgreSQL: ``UPDATE … FROM (SELECT unnest(:id), unnest(:col) …)``; SQLite: one executemany.
    """
    if not rows:
        return
    names = [n for n in rows[0] if n != key]
    if is_postgresql():
        source = unnest_select(table, rows)[1].subquery("v")
        stmt = sa.update(table).where(table.c[key] == source.c[key]).values({n: source.c[n] for n in names})
        db.session.execute(stmt)
        return
    stmt = (
        sa.update(table)
        .where(table.c[key] == sa.bindparam("k_"))
        .values({n: sa.bindparam(f"v_{n}") for n in names})
    )
    db.session.execute(stmt, [{"k_": r[key], **{f"v_{n}": r[n] for n in names}} for r in rows])


def insert_new(
    table: sa.Table, rows: list[dict[str, Any]], unique: Sequence[str], returning: Sequence[str]
) -> list:
    """Insert rows that share their keys, skipping those whose ``unique`` key exists already
    (or earlier in ``rows``); the ``returning`` columns of the rows inserted.

    PostgreSQL takes one array per column; SQLite an ``executemany``. Either way the statement
    is the same for any number of rows, so it is compiled once per process (a many-row
    ``VALUES`` list is compiled anew each time, and its thousands of parameters parsed anew).
    """
    if not rows:
        return []
    if is_postgresql():
        stmt = _insert_from_arrays(table, rows).on_conflict_do_nothing(index_elements=list(unique))
        return db.session.execute(stmt.returning(*(table.c[c] for c in returning))).all()
    stmt = sqlite.insert(table).on_conflict_do_nothing(index_elements=list(unique))
    return db.session.execute(stmt.returning(*(table.c[c] for c in returning)), rows).all()


def insert_with_ids(table: sa.Table, rows: Iterable[dict[str, Any]], count: int | None = None) -> list[int]:
    """Insert rows that share their keys; return their new ids in the rows' order.

    ``RETURNING`` promises no order for a multi-row insert (SQLAlchemy then sends one
    row per statement on SQLite), so the ids are chosen first and inserted with the
    rows. PostgreSQL draws them from the table's sequence in one statement. SQLite
    inserts the first row alone, which takes the database's write lock and gives the
    largest id; no other writer can insert until the transaction ends, so the ids
    above it are free.

    Args:
        rows: a sequence, or with ``count`` any iterable (a generator of the rows is
            never held whole: a history backfill writes a row per identifier).
    """
    n = len(rows) if count is None else count  # type: ignore[arg-type]
    if not n:
        return []
    rows = iter(rows)
    if is_postgresql():
        ids = draw_ids(table, n)
        copy_rows(table, ({**row, "id": i} for row, i in zip(rows, ids, strict=True)))
        return ids
    first = db.session.execute(sa.insert(table).returning(table.c.id), next(rows)).scalar_one()
    ids = list(range(first, first + n))
    copy_rows(table, ({**row, "id": i} for row, i in zip(rows, ids[1:], strict=True)))
    return ids


_DRAW = sa.text("SELECT nextval(pg_get_serial_sequence(:table, 'id')) FROM generate_series(1, :n)")


def draw_ids(table: sa.Table, n: int) -> list[int]:
    """PostgreSQL: ``n`` new ids from ``table``'s sequence, ascending, to insert rows with.

    Sent on the session's connection, without an autoflush: drawing ids is how callers
    avoid a flush. An id drawn and not used is a gap in the sequence, as a rolled-back
    INSERT leaves.
    """
    found = db.session.connection().execute(_DRAW, {"table": table.name, "n": n})
    return sorted(row[0] for row in found)


def copy_rows(table: sa.Table, rows: Iterable[dict[str, Any]]) -> None:
    """Insert many rows that share their keys and need nothing back, the fastest way each database has.

    PostgreSQL: ``COPY … FROM STDIN``, whose rows the driver writes in C (an ``unnest``
    insert has the driver quote every array element in Python, which took longer than
    the server's own work for a history backfill). SQLite: ``executemany`` in chunks.
    Python-side column defaults are evaluated once for the whole insert. ``rows`` may be
    a generator: it is read once, and at most a chunk of it is held.
    """
    rows = iter(rows)
    head = next(rows, None)
    if head is None:
        return
    rows = itertools.chain((head,), rows)
    names = list(head)
    defaults = _python_defaults(table, names)
    if defaults is None or any(isinstance(table.c[n].type, JsonDoc) for n in [*names, *defaults]):
        insert_rows(table, list(rows))  # a SQL default or a JSON document: let SQLAlchemy render them
        return
    if not is_postgresql():
        while chunk := list(itertools.islice(rows, SQLITE_CHUNK)):
            _sqlite_executemany(table, chunk, defaults)
        return
    columns = ", ".join([*names, *defaults])
    fixed = tuple(defaults.values())
    cursor = db.session.connection().connection.driver_connection.cursor()
    with cursor, cursor.copy(f"COPY {table.name} ({columns}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row((*(row[n] for n in names), *fixed))


def _python_defaults(table: sa.Table, names: list[str]) -> dict[str, Any] | None:
    """The defaults of the columns ``names`` leaves out, evaluated once; None if one is SQL."""
    defaults = {}
    for column in table.columns:
        if column.name in names or column.default is None:
            continue
        if not (column.default.is_scalar or column.default.is_callable):
            return None
        defaults[column.name] = column.default.arg if column.default.is_scalar else column.default.arg(None)
    return defaults


def _sqlite_executemany(table: sa.Table, rows: list[dict[str, Any]], defaults: dict[str, Any]) -> None:
    """SQLite: one ``executemany`` of positional tuples, each value converted by its column's type.

    SQLAlchemy's own ``executemany`` builds a parameter dict per row and converts
    every value on its own; a bulk insert repeats the same times and ids, so each
    column converts a distinct value once. ``defaults`` fills the columns the rows
    leave out (one ``created_at`` for rows inserted together).
    """
    names = list(rows[0])
    columns = names + list(defaults)
    dialect = db.session.get_bind().dialect
    memo: dict[str, dict] = {}  # columns of one type share what they converted (first and last seen)
    convert = {name: _converter(table.c[name].type, dialect, memo) for name in columns}
    # Column by column: one comprehension per column, then C-speed ``zip`` into rows.
    data = [[convert[name](row[name]) for row in rows] for name in names]
    data += [itertools.repeat(convert[name](value), len(rows)) for name, value in defaults.items()]
    values = list(zip(*data, strict=False))
    marks = ", ".join("?" * len(columns))
    sql = f"INSERT INTO {table.name} ({', '.join(columns)}) VALUES ({marks})"  # noqa: S608 (schema names)
    db.session.connection().exec_driver_sql(sql, values)


def _converter(type_, dialect, memo: dict[str, dict]):
    """The column type's conversion to what the driver is sent, remembering each distinct value's."""
    process = type_._cached_bind_processor(dialect)
    if process is None:
        return lambda value: value
    seen = memo.setdefault(repr(type_), {})

    def convert(value):
        try:
            return seen[value]
        except KeyError:
            out = seen[value] = process(value)
            return out
        except TypeError:  # unhashable (a JSON document)
            return process(value)

    return convert


class OneTrip:
    """SELECTs and ``DML … RETURNING`` that cost one round trip on PostgreSQL.

    There they become one statement: each part a CTE (data-modifying or not)
    and a ``UNION ALL`` of one branch per part, each branch filling its own
    columns and NULL in the others'. Every part sees the database as it was
    before the statement, so no part may depend on another's writes, and no
    two may write one table (PostgreSQL leaves that undefined). SQLite runs
    the parts in turn. Build it once with bind parameters and keep it: the
    union is built on first use and reused.
    """

    def __init__(self, parts: Sequence[sa.Executable]):
        written = [p.table.name for p in parts if isinstance(p, sa.sql.dml.UpdateBase)]
        if len(set(written)) < len(written):
            raise ValueError("two parts write the same table")
        self.parts = list(parts)
        self._union: sa.CompoundSelect | None = None
        self._layout: list[tuple[int, list[str]]] = []

    def run(self, params: dict[str, Any]) -> list[list[dict[str, Any]]]:
        """Each part's rows as dicts, in the parts' order (rows in no particular order)."""
        if not is_postgresql() or len(self.parts) < 2:
            return [[dict(r._mapping) for r in db.session.execute(p, params)] for p in self.parts]
        found: list[list[dict[str, Any]]] = [[] for _ in self.parts]
        for row in db.session.execute(self._union_statement(), params):
            offset, keys = self._layout[row[0]]
            found[row[0]].append(dict(zip(keys, row[offset : offset + len(keys)], strict=True)))
        return found

    def _union_statement(self) -> sa.CompoundSelect:
        if self._union is None:
            sources = [part.cte(f"part_{n}") for n, part in enumerate(self.parts)]
            slots, offset = [], 1
            for source in sources:
                columns = list(source.c)
                self._layout.append((offset, [c.key for c in columns]))
                slots.append(columns)
                offset += len(columns)
            branches = []
            for n, source in enumerate(sources):
                values = [sa.literal(n, sa.Integer).label("part")]
                for m, columns in enumerate(slots):
                    for k, column in enumerate(columns):
                        value = column if m == n else _typed_null(column.type)
                        values.append(value.label(f"p{m}_{k}"))
                branches.append(sa.select(*values).select_from(source))
            self._union = sa.union_all(*branches)
        return self._union


def _typed_null(type_):
    """NULL cast to ``type_``: a UNION's branches must agree on their columns' types."""
    return sa.null() if isinstance(type_, sa.types.NullType) else sa.cast(sa.null(), type_)
