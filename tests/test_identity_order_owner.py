"""An order follows its own buyer when a late signal moves identifiers between profiles.

A household's phone seen on two customers' POS sales delivered out of order is
re-partitioned in time order: the phone goes to the customer who used it first.
Orders were then routed by their email and phone alone, so the other customer's
sale, which names its buyer by a Shopify customer id, followed the phone to the
wrong person's profile.
"""

from __future__ import annotations

from app.extensions import db
from app.models import Order
from tests.ingest_support import doc_of, fixture, ishop_fixture, post_shopify

ishop = ishop_fixture
PHONE = "+447700900123"


def pos_sale(client, ishop, order_id: int, customer_id: int, created_at: str) -> None:
    sale = fixture("shopify/orders_create_pos.json")
    sale.update(
        {
            "id": order_id,
            "email": None,
            "contact_email": None,
            "phone": PHONE,
            "created_at": created_at,
            "processed_at": created_at,
            "updated_at": created_at,
        }
    )
    sale["customer"] = {"id": customer_id, "email": None, "phone": PHONE, "first_name": str(customer_id)}
    sale.pop("billing_address", None), sale.pop("shipping_address", None)
    assert post_shopify(client, ishop, "orders/create", sale, f"pos-{order_id}").status_code == 200


def test_a_sale_stays_with_its_customer_when_a_late_sale_moves_their_shared_phone(client, ishop, drain):
    pos_sale(client, ishop, 992, 8002, "2026-10-05T10:00:00Z")
    drain()
    pos_sale(client, ishop, 991, 8001, "2026-10-01T10:00:00Z")  # earlier, delivered later
    drain()
    ann, bob = doc_of(ishop, "shopify_customer", "8001"), doc_of(ishop, "shopify_customer", "8002")
    assert ann["id"] != bob["id"]
    owner = {o.external_id: o.profile_id for o in db.session.query(Order)}
    assert owner == {"991": ann["id"], "992": bob["id"]}
    assert (ann["orders"]["pos"]["count"], bob["orders"]["pos"]["count"]) == (1, 1)
