"""a waiting message whose retry was made is ``retried``, no longer ``waiting``

Revision ID: d3f8b1a7c542
Revises: a8d3e6f1b259
Create Date: 2026-11-30 02:40:00

A retried message stayed ``waiting`` for ever: the log showed it as still to be
sent, and every sweep of due messages read it again (and locked its profile to
learn that its retry was made). Rows whose retry names them are marked now.
"""

import sqlalchemy as sa
from alembic import op

revision = "d3f8b1a7c542"
down_revision = "a8d3e6f1b259"
branch_labels = None
depends_on = None


def upgrade():
    op.execute(
        sa.text(
            "UPDATE messages SET status = 'retried' WHERE status = 'waiting' AND id IN "
            "(SELECT retry_of_id FROM messages WHERE retry_of_id IS NOT NULL)"
        )
    )


def downgrade():
    op.execute(sa.text("UPDATE messages SET status = 'waiting' WHERE status = 'retried'"))
