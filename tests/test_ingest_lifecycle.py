"""Ingest keeps lifecycle stages current between enrichment runs."""

import sqlalchemy as sa

from app.extensions import db
from app.models import Event
from tests.ingest_support import fixture, ishop_fixture, post_shopify, profile_of

ishop = ishop_fixture


def _stage_changes(profile_id):
    rows = db.session.scalars(
        sa.select(Event).where(Event.profile_id == profile_id, Event.type == "lifecycle.changed")
    ).all()
    return [(e.properties.get("from"), e.properties.get("to")) for e in rows]


def test_a_first_order_makes_its_buyer_converted_at_once(client, ishop, drain):
    order = fixture("shopify/orders_create_web.json")
    response = post_shopify(client, ishop, "orders/create", order, webhook_id="wh-life-1")
    assert response.status_code == 200
    drain()
    db.session.expire_all()
    buyer = profile_of(ishop, "shopify_customer", str(order["customer"]["id"]))
    # The fixture's order is weeks old, so the buyer may already count as quiet;
    # either way the stage is no longer "new" and the change was recorded.
    assert buyer.lifecycle_stage in {"converted", "at_risk", "churned"}
    assert _stage_changes(buyer.id)[-1] == ("new", buyer.lifecycle_stage)
