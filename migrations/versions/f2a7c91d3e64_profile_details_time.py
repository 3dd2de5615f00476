"""a profile's names, location and currency remember the source time that set them

Revision ID: f2a7c91d3e64
Revises: e5b9c2d4f871
Create Date: 2026-11-29 23:55:00

Shopify delivers customer and order versions out of order. The profile keeps
the ``updated_at`` of the version that last set its names, country, province
and currency, and an older version arriving late changes none of them, so the
profile ends as an in-order delivery leaves it.
"""
import sqlalchemy as sa
from alembic import op

import app.models.base

revision = "f2a7c91d3e64"
down_revision = "e5b9c2d4f871"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("profiles") as batch:
        batch.add_column(sa.Column("details_at", app.models.base.UTCDateTime(timezone=True), nullable=True))


def downgrade():
    with op.batch_alter_table("profiles") as batch:
        batch.drop_column("details_at")
