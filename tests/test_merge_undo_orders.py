"""Undo gives each side what reached the survivor for it during the merge: orders and details.

A POS sale or a marketplace order often names its buyer by a Shopify customer id or a
marketplace account alone, with no email or phone: it stayed with the survivor on undo, and
one person's purchase counted on the other's profile. A customer's new name or address sent
during the merge was lost: undo put back both profiles as they were at the merge.
"""

from __future__ import annotations

from app.extensions import db
from app.models import Merge, Order, Profile
from tests.ingest_support import doc_of, fixture, ishop_fixture, post_shopify

ishop = ishop_fixture


def customer(client, ishop, number: int, email: str, topic="customers/create", **fields) -> None:
    body = fixture("shopify/customers_create_2025_10.json")
    body.update({"id": number, "email": email, "phone": None, "first_name": email.split("@")[0], **fields})
    webhook_id = f"c{number}-{topic}-{fields.get('updated_at', '')}"
    assert post_shopify(client, ishop, topic, body, webhook_id).status_code == 200


def merge(client, ishop, first: str, second: str) -> int:
    a, b = (doc_of(ishop, "email", e)["id"] for e in (first, second))
    answer = client.post(f"/api/v1/profiles/{a}/merge", json={"other_id": b}, headers=ishop.auth)
    assert answer.status_code == 201, answer.get_data(as_text=True)
    return db.session.query(Merge).one().id


def undo(client, ishop, merge_id: int) -> None:
    assert client.post(f"/api/v1/merges/{merge_id}/undo", headers=ishop.auth).status_code == 200


def test_a_pos_sale_naming_only_the_merged_away_customers_id_goes_back_with_them(client, ishop, drain):
    customer(client, ishop, 8001, "ann@mail.uk")
    customer(client, ishop, 8002, "bob@mail.uk")
    drain()
    merge_id = merge(client, ishop, "ann@mail.uk", "bob@mail.uk")
    sale = fixture("shopify/orders_create_pos.json")
    sale.update({"id": 991, "email": None, "contact_email": None, "phone": None, "total_price": "40.00"})
    sale.pop("total_price_set", None)
    sale["customer"] = {"id": 8002, "email": None, "phone": None, "first_name": "Bob"}
    sale.pop("billing_address", None), sale.pop("shipping_address", None)
    assert post_shopify(client, ishop, "orders/create", sale, "pos-991").status_code == 200
    drain()
    undo(client, ishop, merge_id)
    ann, bob = doc_of(ishop, "email", "ann@mail.uk"), doc_of(ishop, "email", "bob@mail.uk")
    assert (bob["orders"]["pos"]["count"], ann["orders"]["pos"]["count"]) == (1, 0)
    assert db.session.query(Order).one().profile_id == bob["id"]


def test_a_marketplace_order_of_the_merged_away_buyers_account_goes_back_with_them(client, ishop, drain):
    customer(client, ishop, 8001, "ann@mail.uk")
    customer(client, ishop, 8002, "bob@mail.uk")
    event = {
        "type": "order.placed",
        "occurred_at": "2026-10-05T10:00:00Z",
        "channel": "marketplace",
        "properties": {"marketplace": "amazon", "order_id": "amz-1", "total": 15, "currency": "GBP"},
    }
    first = {**event, "id": "e1", "identifiers": {"email": "bob@mail.uk", "amazon_buyer_id": "AMZBOB1"}}
    assert client.post("/api/v1/events", json=first, headers=ishop.auth).status_code == 202
    drain()
    merge_id = merge(client, ishop, "ann@mail.uk", "bob@mail.uk")
    later = {**event, "id": "e2", "identifiers": {"amazon_buyer_id": "AMZBOB1"}}
    later["properties"] = {**event["properties"], "order_id": "amz-2", "total": 20}
    answer = client.post("/api/v1/events", json=later, headers=ishop.auth)
    assert answer.status_code == 202
    drain()
    undo(client, ishop, merge_id)
    ann, bob = doc_of(ishop, "email", "ann@mail.uk"), doc_of(ishop, "email", "bob@mail.uk")
    assert (bob["orders"]["marketplace"]["count"], bob["orders"]["marketplace"]["spend"]) == (2, 35.0)
    assert ann["orders"]["marketplace"]["count"] == 0


def test_a_new_name_and_address_sent_during_the_merge_stay_with_their_customer(client, ishop, drain):
    customer(client, ishop, 8001, "ann@mail.uk", first_name="Ann", last_name="Lee")
    customer(client, ishop, 8002, "bob@mail.uk", first_name="Bob", last_name="Ray")
    drain()
    merge_id = merge(client, ishop, "ann@mail.uk", "bob@mail.uk")
    moved = {"country_code": "US", "province_code": "TX", "city": "Austin", "first_name": "Robert"}
    customer(
        client,
        ishop,
        8002,
        "bob@mail.uk",
        topic="customers/update",
        first_name="Robert",
        last_name="Ray",
        updated_at="2026-12-01T10:00:00Z",
        default_address=moved,
    )
    drain()
    undo(client, ishop, merge_id)
    ann, bob = doc_of(ishop, "email", "ann@mail.uk"), doc_of(ishop, "email", "bob@mail.uk")
    assert (bob["name"], ann["name"]) == ("Robert Ray", "Ann Lee")
    bob_row, ann_row = (db.session.get(Profile, d["id"]) for d in (bob, ann))
    assert (bob_row.country, bob_row.province, ann_row.country) == ("US", "TX", "GB")
