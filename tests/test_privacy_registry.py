"""Every column is classified as personal or not, in one place."""

from app.extensions import db
from app.models.privacy import NOT_PERSONAL, PERSONAL


def test_every_column_is_declared_personal_or_not(app):
    unclassified = []
    for table in db.metadata.sorted_tables:
        personal = set(PERSONAL.get(table.name, {}))
        other = NOT_PERSONAL.get(table.name, set())
        for column in table.columns:
            if column.name not in personal | other:
                unclassified.append(f"{table.name}.{column.name}")
    assert unclassified == [], f"classify these columns in app/models/privacy.py: {unclassified}"


def test_no_column_is_declared_both_ways(app):
    both = [(t, c) for t, cols in PERSONAL.items() for c in cols if c in NOT_PERSONAL.get(t, set())]
    assert both == []


def test_registry_names_only_real_columns(app):
    columns = {t.name: {c.name for c in t.columns} for t in db.metadata.sorted_tables}
    stale = [f"{t}.{c}" for t, cols in PERSONAL.items() for c in cols if c not in columns.get(t, set())]
    stale += [f"{t}.{c}" for t, cols in NOT_PERSONAL.items() for c in cols if c not in columns.get(t, set())]
    assert stale == []


def test_every_shop_owned_table_carries_shop_id(app):
    global_tables = {"shops", "users"}
    missing = [
        t.name
        for t in db.metadata.sorted_tables
        if t.name not in global_tables and "shop_id" not in t.columns
    ]
    assert missing == []
