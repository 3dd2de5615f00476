"""outbox items know their transport

Revision ID: 7a4f2e9c3b81
Revises: 5e2b8c4d1a60
Create Date: 2026-11-29 01:00:00

The transport an outbox item is bound for (a provider's name, or
``outbox`` when recording it is the delivery) is fixed at send time, so
the delivery sweeper can re-queue provider hand-overs that a crash lost
without ever sending an older outbox-only item. Existing items are
``outbox``: none of them is picked up.
"""
import sqlalchemy as sa
from alembic import op


revision = "7a4f2e9c3b81"
down_revision = "5e2b8c4d1a60"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("transport", sa.String(length=20), server_default="outbox", nullable=False)
        )


def downgrade():
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_column("transport")
