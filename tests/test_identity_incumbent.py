"""A profile stays with the person who held it when a second person arrives on a shared identifier.

When a household's phone or a flatmate's laptop brings a second person, the people are
split apart again, and one of them keeps the existing profile row: its consents, its
messages, its name. It went to whoever's email sorted first, so the newcomer could take
over the first person's profile and be emailed on her opt-in. It goes to the person the
profile held before the signal: its most trusted identifier, the longest known, leaving
out what the arriving signal itself added.
"""

from __future__ import annotations

import copy

from tests.ingest_support import doc_of, fixture, ishop_fixture, post_pixel, post_shopify

ishop = ishop_fixture
PHONE = "+447700901301"


def opt_in(client, ishop, email: str) -> None:
    body = {
        "identifier": f"email:{email}",
        "channel": "email",
        "status": "opted_in",
        "consent_text": "Send me news",
        "source": "checkout",
        "captured_at": "2026-11-14T10:00:00Z",
    }
    assert client.post("/api/v1/consents", json=body, headers=ishop.auth).status_code == 200


def guest_order(client, ishop, order_id: int, email: str, at: str) -> None:
    order = fixture("shopify/orders_create_guest.json")
    order.update({"id": order_id, "email": email, "contact_email": email, "phone": PHONE})
    order.update({"created_at": at, "processed_at": at, "updated_at": at})
    for part in ("billing_address", "shipping_address"):
        if order.get(part):
            order[part] = {**order[part], "phone": PHONE}
    assert post_shopify(client, ishop, "orders/create", order, f"o-{order_id}").status_code == 200


def shopify_customer(client, ishop, number: int, email: str, at: str) -> None:
    body = fixture("shopify/customers_create_2025_10.json")
    body.update({"id": number, "email": email, "phone": PHONE, "created_at": at, "updated_at": at})
    body.update({"first_name": email.split("@")[0], "last_name": "Household"})
    assert post_shopify(client, ishop, "customers/create", body, f"c-{number}").status_code == 200


def popup(client, clientid: str, email: str, at: str, n: int) -> None:
    body = copy.deepcopy(fixture("pixel/form_submitted_exit_intent.json"))
    body.update({"id": f"fs-{n}", "clientId": clientid, "timestamp": at})
    body["data"]["element"]["elements"][0]["value"] = email
    assert post_pixel(client, body).status_code in (200, 202)


def email_status(ishop, email: str):
    return (doc_of(ishop, "email", email)["consents"]["email"] or {}).get("status")


def test_a_second_guest_on_a_household_phone_does_not_take_the_first_ones_opt_in(client, ishop, drain):
    guest_order(client, ishop, 29001, "zoe.h@qa-mail.com", "2026-11-14T09:00:00Z")
    drain()
    opt_in(client, ishop, "zoe.h@qa-mail.com")
    zoe = doc_of(ishop, "email", "zoe.h@qa-mail.com")["id"]
    guest_order(client, ishop, 29002, "adam.h@qa-mail.com", "2026-11-16T09:00:00Z")  # sorts before zoe
    drain()
    assert doc_of(ishop, "email", "zoe.h@qa-mail.com")["id"] == zoe
    assert email_status(ishop, "zoe.h@qa-mail.com") == "opted_in"
    adam = doc_of(ishop, "email", "adam.h@qa-mail.com")
    assert adam["id"] != zoe and (adam["consents"]["email"] or {}).get("status") != "opted_in"


def test_a_late_shopify_account_on_a_household_phone_gets_a_profile_of_its_own(client, ishop, drain):
    shopify_customer(client, ishop, 2712, "laura3@qa-mail.com", "2026-11-15T09:00:00Z")
    drain()
    opt_in(client, ishop, "laura3@qa-mail.com")
    laura = doc_of(ishop, "email", "laura3@qa-mail.com")
    shopify_customer(client, ishop, 2711, "ernie3@qa-mail.com", "2026-11-14T09:00:00Z")  # older, sent later
    drain()
    assert doc_of(ishop, "email", "laura3@qa-mail.com")["id"] == laura["id"]
    assert doc_of(ishop, "email", "laura3@qa-mail.com")["name"] == laura["name"]
    assert email_status(ishop, "laura3@qa-mail.com") == "opted_in"
    assert email_status(ishop, "ernie3@qa-mail.com") != "opted_in"


def test_a_flatmate_submitting_on_a_shared_laptop_does_not_take_the_first_ones_profile(client, ishop, drain):
    popup(client, "ck-flat2", "zz.flat@qa-mail.com", "2026-11-16T09:00:00.000Z", 1)
    drain()
    opt_in(client, ishop, "zz.flat@qa-mail.com")
    zz = doc_of(ishop, "email", "zz.flat@qa-mail.com")["id"]
    popup(client, "ck-flat2", "aa.flat@qa-mail.com", "2026-11-16T20:00:00.000Z", 2)
    drain()
    assert doc_of(ishop, "email", "zz.flat@qa-mail.com")["id"] == zz
    assert email_status(ishop, "zz.flat@qa-mail.com") == "opted_in"
    assert email_status(ishop, "aa.flat@qa-mail.com") != "opted_in"
