"""Declarative base, column types and annotated aliases shared by every model.

Timestamps are stored in UTC and always come back timezone-aware, on
SQLite as on PostgreSQL, so services never compare naive and aware times.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Annotated, Any

import sqlalchemy as sa
from sqlalchemy import types
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import DeclarativeBase, mapped_column, registry


class UTCDateTime(types.TypeDecorator):
    """A timestamp stored as UTC and read back as an aware UTC datetime."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not accepted; attach a time zone")
        value = value.astimezone(dt.UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)


BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


class JsonDoc(types.TypeDecorator):
    """JSON everywhere, stored as JSONB on PostgreSQL."""

    impl = sa.JSON
    cache_ok = True

    def load_dialect_impl(self, dialect):
        if dialect.name == "postgresql":
            return dialect.type_descriptor(postgresql.JSONB())
        return dialect.type_descriptor(sa.JSON())


Money = sa.Numeric(14, 2)


def utcnow() -> dt.datetime:
    """The current time, aware, in UTC."""
    return dt.datetime.now(dt.UTC)


# The earliest moment a record may carry: no shop, order, visit or consent is older, and
# a placeholder (0001-01-01) would age a profile by centuries and overflow date arithmetic.
EARLIEST_TIME = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


class Base(DeclarativeBase):
    """Base of every model; maps Python annotations to portable column types."""

    registry = registry(
        type_annotation_map={
            dt.datetime: UTCDateTime(),
            Decimal: Money,
            dict[str, Any]: JsonDoc(),
            list[Any]: JsonDoc(),
            int: sa.Integer(),
            str: sa.String(255),
        },
        metadata=sa.MetaData(
            naming_convention={
                "ix": "ix_%(column_0_label)s",
                "uq": "uq_%(table_name)s_%(column_0_N_name)s",
                "ck": "ck_%(table_name)s_%(constraint_name)s",
                "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
                "pk": "pk_%(table_name)s",
            }
        ),
    )


# Annotated aliases for the columns that repeat across tables.
pk_id = Annotated[int, mapped_column(BigId, primary_key=True, autoincrement=True)]
shop_fk = Annotated[int, mapped_column(sa.ForeignKey("shops.id", ondelete="CASCADE"), index=True)]
# The shop of a row in a table whose own indexes lead with shop_id: an index on shop_id alone would
# serve nothing they do not, and cost every insert (``tests/test_schema_indexes.py``).
shop_ref = Annotated[int, mapped_column(sa.ForeignKey("shops.id", ondelete="CASCADE"))]
# The shop of a row whose composite foreign key (shop_id, parent_id) -> parent (shop_id, id) both
# keeps it in its parent's shop and, through the parent, proves the shop exists: one check, not two.
shop_key = Annotated[int, mapped_column(BigId)]
created_at = Annotated[dt.datetime, mapped_column(default=utcnow)]
updated_at = Annotated[dt.datetime, mapped_column(default=utcnow, onupdate=utcnow)]
text = Annotated[str, mapped_column(sa.Text)]
