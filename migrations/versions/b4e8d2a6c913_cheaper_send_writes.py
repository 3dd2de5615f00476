"""cheaper send writes: the outbox keyed by its message, recipients found by index order

Revision ID: b4e8d2a6c913
Revises: 9d3b6f1a2c47
Create Date: 2026-11-29 03:30:00

An outbox item is keyed ``(shop_id, message_id)`` (a message has at most
one): a send no longer draws from a sequence or writes a second index
entry for its item. The identifiers' profile index becomes ``(profile_id,
kind, first_seen_at, id)``: a send's recipient (a profile's oldest usable
identifier of a kind) is the first entry of an index scan instead of a
sort per recipient, and every lookup by profile still uses its prefix.
"""

import sqlalchemy as sa
from alembic import op

revision = "b4e8d2a6c913"
down_revision = "9d3b6f1a2c47"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade():
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_outbox_message_id"))
        batch_op.drop_constraint(batch_op.f("pk_outbox"), type_="primary")
        batch_op.drop_column("id")
        batch_op.create_primary_key(batch_op.f("pk_outbox"), ["shop_id", "message_id"])
    with op.batch_alter_table("identifiers", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_identifiers_profile_id"))
        batch_op.create_index(
            "ix_identifiers_profile_kind", ["profile_id", "kind", "first_seen_at", "id"], unique=False
        )


def downgrade():
    with op.batch_alter_table("identifiers", schema=None) as batch_op:
        batch_op.drop_index("ix_identifiers_profile_kind")
        batch_op.create_index(batch_op.f("ix_identifiers_profile_id"), ["profile_id"], unique=False)
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("pk_outbox"), type_="primary")
    if op.get_bind().dialect.name == "postgresql":
        # A bigserial column numbers the existing items and keeps its sequence for new ones.
        op.execute("ALTER TABLE outbox ADD COLUMN id BIGSERIAL")
    else:
        with op.batch_alter_table("outbox", schema=None) as batch_op:
            batch_op.add_column(sa.Column("id", BigId, nullable=True))
        op.execute("UPDATE outbox SET id = rowid")
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.alter_column("id", existing_type=BigId, nullable=False)
        batch_op.create_primary_key(batch_op.f("pk_outbox"), ["id"])
        batch_op.create_index(batch_op.f("ix_outbox_message_id"), ["message_id"], unique=False)
