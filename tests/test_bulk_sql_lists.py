"""Long lists as one parameter: ``value_in`` finds exactly the values asked for, whatever they hold."""

from __future__ import annotations

import sqlalchemy as sa

from app.extensions import db
from app.models import AuditLog
from app.services.bulk_sql import value_in

AUDIT = AuditLog.__table__
AWKWARD = ['say "hi"', "back\\slash", "a,b", "{braces}", "NULL", "", "ünïcödé", "plain"]


def test_value_in_matches_awkward_values_exactly_and_nothing_else(shop):
    for actor in AWKWARD + ["not asked for", "null"]:
        db.session.execute(sa.insert(AUDIT).values(shop_id=shop.id, actor=actor, action="a", details={}))
    wanted = AWKWARD + ["never stored"]
    found = db.session.scalars(
        sa.select(AUDIT.c.actor).where(AUDIT.c.shop_id == shop.id, value_in(AUDIT.c.actor, wanted))
    ).all()
    assert sorted(found) == sorted(AWKWARD)
    one = db.session.scalars(
        sa.select(AUDIT.c.actor).where(AUDIT.c.shop_id == shop.id, value_in(AUDIT.c.actor, ["NULL"]))
    ).all()
    assert one == ["NULL"]
