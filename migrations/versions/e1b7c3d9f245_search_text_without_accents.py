"""search texts lose their accents: an agent typing "zoe" finds Zoë

Revision ID: e1b7c3d9f245
Revises: d4a8e1f7c2b6
Create Date: 2026-11-30 17:30:00

The console's search text was only case-folded, so "jose" missed José and "zoe"
missed Zoë. New texts are folded by ``app.search_fold.fold``; the stored ones are
folded here, a page of profiles at a time, and only those that change are written.
"""

import sqlalchemy as sa
from alembic import op

revision = "e1b7c3d9f245"
down_revision = "d4a8e1f7c2b6"
branch_labels = None
depends_on = None

PAGE = 5000


def upgrade():
    from app.search_fold import fold

    bind = op.get_bind()
    profiles = sa.table("profiles", sa.column("id", sa.BigInteger), sa.column("search_text", sa.Text))
    last = 0
    while True:
        rows = bind.execute(
            sa.select(profiles.c.id, profiles.c.search_text)
            .where(profiles.c.id > last, profiles.c.search_text.is_not(None))
            .order_by(profiles.c.id)
            .limit(PAGE)
        ).all()
        if not rows:
            return
        last = rows[-1].id
        changed = [{"pid": r.id, "text": fold(r.search_text)} for r in rows if fold(r.search_text) != r.search_text]
        if changed:
            bind.execute(
                profiles.update().where(profiles.c.id == sa.bindparam("pid")).values(search_text=sa.bindparam("text")),
                changed,
            )


def downgrade():
    """Folded texts stay folded: the search still finds them (it folds the query too)."""
