"""Shopify's test orders are kept but are nobody's purchase

Revision ID: d4a8e1f7c2b6
Revises: c7f1e3a9b254
Create Date: 2026-11-30 17:10:00

A merchant checking out with the Bogus Gateway (or a payment provider's test
mode) makes an order with ``"test": true``. It was counted as a purchase: the
tester became a "converted" customer with spend, and the shop's revenue grew.
"""

import sqlalchemy as sa
from alembic import op

revision = "d4a8e1f7c2b6"
down_revision = "c7f1e3a9b254"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("orders") as batch:
        batch.add_column(sa.Column("test", sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade():
    with op.batch_alter_table("orders") as batch:
        batch.drop_column("test")
