"""failed sign-ins are counted on the account, where every web process sees them

Revision ID: c7f1e3a9b254
Revises: b6e2d9a4c813
Create Date: 2026-11-30 06:40:00

"Ten failed sign-ins in a minute make that account's sign-in wait" was counted
in each web process when Redis was not configured (the embedded default), so
with two gunicorn processes the eleventh guess went through.
"""

import sqlalchemy as sa
from alembic import op

revision = "c7f1e3a9b254"
down_revision = "b6e2d9a4c813"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("failed_sign_ins", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("failed_sign_ins_minute", sa.Integer(), nullable=False, server_default="0"))


def downgrade():
    with op.batch_alter_table("users") as batch:
        batch.drop_column("failed_sign_ins_minute")
        batch.drop_column("failed_sign_ins")
