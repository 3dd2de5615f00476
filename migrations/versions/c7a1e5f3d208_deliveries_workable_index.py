"""a drain claims its next batch off an index of the rows still to work

Revision ID: c7a1e5f3d208
Revises: b4e8d2a6c913
Create Date: 2026-11-29 03:45:00

The claim read every pending row of the shop (``(shop_id, status)``) and
sorted them by id to take the first 500: with 100,000 waiting, each batch
paid for all of them. A partial index of the workable rows in id order
gives the next batch directly, and stays as small as the backlog.
"""
import sqlalchemy as sa
from alembic import op

revision = "c7a1e5f3d208"
down_revision = "b4e8d2a6c913"
branch_labels = None
depends_on = None

WORKABLE = sa.text("status IN ('pending', 'failed', 'processing')")


def upgrade():
    with op.batch_alter_table("webhook_deliveries", schema=None) as batch_op:
        batch_op.create_index(
            "ix_deliveries_workable",
            ["shop_id", "id"],
            unique=False,
            postgresql_where=WORKABLE,
            sqlite_where=WORKABLE,
        )


def downgrade():
    with op.batch_alter_table("webhook_deliveries", schema=None) as batch_op:
        batch_op.drop_index("ix_deliveries_workable")
