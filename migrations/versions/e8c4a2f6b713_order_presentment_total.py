"""an order keeps its total in the customer's currency

Revision ID: e8c4a2f6b713
Revises: d3f8b1a7c542
Create Date: 2026-11-30 02:40:00

A refund that comes alone (refunds/create) paid back in the customer's currency
with no money sets was booked as shop money: 140.40 USD off a 120.00 GBP order
made the buyer's spend negative. The order's total in the customer's currency
gives the rate to convert it by.
"""
import sqlalchemy as sa
from alembic import op


revision = "e8c4a2f6b713"
down_revision = "d3f8b1a7c542"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("orders") as batch:
        batch.add_column(sa.Column("presentment_total", sa.Numeric(14, 2), nullable=True))


def downgrade():
    with op.batch_alter_table("orders") as batch:
        batch.drop_column("presentment_total")
