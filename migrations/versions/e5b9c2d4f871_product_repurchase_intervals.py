"""each product's typical repurchase interval, measured by enrichment, for replenishment due dates

Revision ID: e5b9c2d4f871
Revises: 44376ba20c57
Create Date: 2026-11-29 21:40:00

Enrichment measures, over the shop's repeat buyers of each product, the median
days between one customer's purchases of it (``app.analytics.replenishment``)
and rewrites this table whole. A profile's replenishment list is its last
purchase of each product plus the product's interval, read on demand, so an
order placed today moves the due date at once.
"""
import sqlalchemy as sa
from alembic import op

import app.models.base

revision = "e5b9c2d4f871"
down_revision = "44376ba20c57"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "product_intervals",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("shop_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("product_id", sa.String(length=64), nullable=False),
        sa.Column("title", sa.String(length=255), nullable=True),
        sa.Column("median_days", sa.Double(), nullable=False),
        sa.Column("gaps", sa.Integer(), nullable=False),
        sa.Column("buyers", sa.Integer(), nullable=False),
        sa.Column("computed_at", app.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["shop_id"], ["shops.id"], name=op.f("fk_product_intervals_shop_id_shops"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_product_intervals")),
        sa.UniqueConstraint("shop_id", "product_id", name=op.f("uq_product_intervals_shop_id_product_id")),
    )


def downgrade():
    op.drop_table("product_intervals")
