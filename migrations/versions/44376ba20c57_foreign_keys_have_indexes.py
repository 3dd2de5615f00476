"""every foreign key has an index to follow it; no index on shop_id alone beside one leading with it

Revision ID: 44376ba20c57
Revises: c7a1e5f3d208
Create Date: 2026-11-29 15:11:18

Deleting a row makes PostgreSQL find the rows whose foreign keys point at it.
Without an index leading with the key, that is a scan of the whole referencing
table (every shop's) per row deleted: erasing a customer's identifiers scanned
``identifier_links`` twice per identifier, and removing a shop's would be
quadratic. ``identifier_links`` gets an index on each end alone (replacing
``(shop_id, b_id)``; ids are global, so the shop adds nothing to a lookup by
id), and ``consent_states.record_id``, ``consent_records.consent_text_id`` and
``merges.candidate_id`` get theirs.

An index on ``shop_id`` alone, on a table with another index that leads with
``shop_id``, answers nothing the other does not and costs every insert: ten are
dropped, among them those of ``events`` and ``webhook_deliveries``, which take
an insert per event. ``tests/test_schema_indexes.py`` keeps both rules.
"""
from alembic import op

revision = "44376ba20c57"
down_revision = "c7a1e5f3d208"
branch_labels = None
depends_on = None

# Tables whose index on shop_id alone goes: each has another index leading with shop_id.
SHOP_ONLY = (
    "audit_log",
    "consent_texts",
    "events",
    "identifier_links",
    "identifiers",
    "merge_candidates",
    "merges",
    "orders",
    "rollup_snapshots",
    "webhook_deliveries",
)
# Foreign keys that had no index of their own.
FOLLOWED = (
    ("consent_records", "consent_text_id"),
    ("consent_states", "record_id"),
    ("merges", "candidate_id"),
)


def upgrade():
    for table in SHOP_ONLY:
        op.drop_index(f"ix_{table}_shop_id", table_name=table)
    for table, column in FOLLOWED:
        op.create_index(f"ix_{table}_{column}", table, [column])
    op.drop_index("ix_identifier_links_b", table_name="identifier_links")
    op.create_index("ix_identifier_links_a", "identifier_links", ["a_id"])
    op.create_index("ix_identifier_links_b", "identifier_links", ["b_id"])


def downgrade():
    op.drop_index("ix_identifier_links_b", table_name="identifier_links")
    op.drop_index("ix_identifier_links_a", table_name="identifier_links")
    op.create_index("ix_identifier_links_b", "identifier_links", ["shop_id", "b_id"])
    for table, column in FOLLOWED:
        op.drop_index(f"ix_{table}_{column}", table_name=table)
    for table in SHOP_ONLY:
        op.create_index(f"ix_{table}_shop_id", table, ["shop_id"])
