"""signing out or a new password ends every session of the account

Revision ID: f3c9a5e2b718
Revises: e1b7c3d9f245
Create Date: 2026-11-30 17:20:00

A session named its user by id alone, so a copy of the cookie kept working after
"Sign out" and after ``c360 user set-password``. Sessions now carry the account's
generation, which both move on. Sessions made before this upgrade name no
generation and sign in again.
"""

import sqlalchemy as sa
from alembic import op

revision = "f3c9a5e2b718"
down_revision = "e1b7c3d9f245"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("session_generation", sa.Integer(), nullable=False, server_default="0"))


def downgrade():
    with op.batch_alter_table("users") as batch:
        batch.drop_column("session_generation")
