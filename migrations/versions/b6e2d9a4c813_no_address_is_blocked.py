"""a send with no address on its channel is ``blocked``, no longer ``failed``

Revision ID: b6e2d9a4c813
Revises: e8c4a2f6b713
Create Date: 2026-11-30 05:10:00

``POST /messages`` answers sent, blocked, waiting or missed (CONTRACT.md), and
answered ``failed`` when the gate allowed a send to a profile without an address
on the channel. Such a send is now logged as blocked with its reason
(``no_address:<channel>``); the rows logged before are marked the same way, so
the log and the filters show one status for one cause.
"""

import sqlalchemy as sa
from alembic import op

revision = "b6e2d9a4c813"
down_revision = "e8c4a2f6b713"
branch_labels = None
depends_on = None


def upgrade():
    op.execute(
        sa.text("UPDATE messages SET status = 'blocked' WHERE status = 'failed' AND reason LIKE 'no_address:%'")
    )


def downgrade():
    op.execute(
        sa.text("UPDATE messages SET status = 'failed' WHERE status = 'blocked' AND reason LIKE 'no_address:%'")
    )
