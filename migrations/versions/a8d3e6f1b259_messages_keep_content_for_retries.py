"""a waiting message keeps its content for the retry, and each retry names the attempt it retries

Revision ID: a8d3e6f1b259
Revises: f2a7c91d3e64
Create Date: 2026-11-30 00:30:00

A journey's or a time-sensitive message that waits (quiet hours, caps) was retried
without what it said, so the provider got an empty text. And a retry was found by
"a newer message alike", so of two time-sensitive messages waiting for the morning
only the newer was ever sent. The message now keeps its content, and its retry
names it (``retry_of_id``).
"""
import sqlalchemy as sa
from alembic import op

import app.models.base

revision = "a8d3e6f1b259"
down_revision = "f2a7c91d3e64"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("messages") as batch:
        batch.add_column(sa.Column("content", app.models.base.JsonDoc(), nullable=True))
        batch.add_column(
            sa.Column("retry_of_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True)
        )
        batch.create_foreign_key(
            batch.f("fk_messages_retry_of_id_messages"), "messages", ["retry_of_id"], ["id"], ondelete="SET NULL"
        )
    op.create_index("ix_messages_retry_of_id", "messages", ["retry_of_id"])


def downgrade():
    op.drop_index("ix_messages_retry_of_id", table_name="messages")
    with op.batch_alter_table("messages") as batch:
        batch.drop_constraint(batch.f("fk_messages_retry_of_id_messages"), type_="foreignkey")
        batch.drop_column("retry_of_id")
        batch.drop_column("content")
