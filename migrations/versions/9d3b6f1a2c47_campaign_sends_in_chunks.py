"""campaign sends in chunks

Revision ID: 9d3b6f1a2c47
Revises: 7a4f2e9c3b81
Create Date: 2026-11-29 03:00:00

A campaign send and its chunks: each chunk holds its profile ids and is
marked done in the same transaction as its messages, so a chunk job run
twice writes nothing, and a chunk whose job was lost is queued again.
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "9d3b6f1a2c47"
down_revision = "7a4f2e9c3b81"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Json = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade():
    op.create_table(
        "campaign_sends",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("shop_id", BigId, nullable=False),
        sa.Column("campaign_id", sa.String(length=64), nullable=True),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("source", sa.String(length=20), nullable=False),
        sa.Column("send_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("audience", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["shop_id"], ["shops.id"], name=op.f("fk_campaign_sends_shop_id_shops"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_campaign_sends")),
        sa.UniqueConstraint("shop_id", "id", name=op.f("uq_campaign_sends_shop_id_id")),
    )
    op.create_table(
        "campaign_chunks",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("shop_id", BigId, nullable=False),
        sa.Column("send_id", BigId, nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("profile_ids", Json, nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("sent", sa.Integer(), nullable=False),
        sa.Column("blocked", sa.Integer(), nullable=False),
        sa.Column("failed", sa.Integer(), nullable=False),
        sa.Column("reasons", Json, nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("done_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["shop_id", "send_id"],
            ["campaign_sends.shop_id", "campaign_sends.id"],
            name=op.f("fk_campaign_chunks_shop_id_campaign_sends"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_campaign_chunks")),
        sa.UniqueConstraint("send_id", "position", name=op.f("uq_campaign_chunks_send_id_position")),
    )
    op.create_index("ix_campaign_chunks_pending", "campaign_chunks", ["shop_id", "status"])


def downgrade():
    op.drop_index("ix_campaign_chunks_pending", table_name="campaign_chunks")
    op.drop_table("campaign_chunks")
    op.drop_table("campaign_sends")
