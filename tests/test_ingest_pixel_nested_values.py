"""A pixel event whose nested fields are the wrong shape is refused with the path that is wrong.

A form whose ``data.element.elements`` was ``true`` answered an HTML 500 and lost the whole
batch: the check read it as a list. Every nested field the pixel reads is now checked where it
is read: the event is refused with the path and what it holds, dead-lettered beside the
batch's valid events (a 200), or answered 400 when nothing in the body is valid.
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from app.extensions import db
from app.models import Event, WebhookDelivery
from tests.ingest_support import fixture, ishop_fixture, post_pixel, profile_of
from workers.ingest import drain_shop

ishop = ishop_fixture
FORM = ("pixel/form_submitted_exit_intent.json", None)
CHECKOUT = ("pixel/checkout_completed.json", None)
PRODUCT = ("pixel/batch.json", 0)
SEARCH = ("pixel/batch.json", 1)


def broken(source: tuple[str, int | None], path: str, value) -> dict:
    """The fixture's event with the value at ``path`` (dotted; a list position as a number) replaced."""
    name, index = source
    event = fixture(name) if index is None else fixture(name)[index]
    *parents, last = path.split(".")
    node = event
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node.setdefault(key, {})
    node[int(last) if isinstance(node, list) else last] = value
    return {**event, "id": "broken-1"}


CASES = [
    (FORM, "data.element.elements", True, "data.element.elements must be a list, not bool"),
    (FORM, "data.element.elements", 5, "data.element.elements must be a list, not int"),
    (FORM, "data.element.elements", {"name": "email"}, "data.element.elements must be a list, not dict"),
    (FORM, "data.element.elements", "email", "data.element.elements must be a list, not str"),
    (FORM, "data.element.elements.0", 5, "data.element.elements[0] must be an object, not int"),
    (FORM, "data.element.elements.0", "x@y.co", "data.element.elements[0] must be an object, not str"),
    (FORM, "data.element", ["form"], "data.element must be an object, not list"),
    (FORM, "data.element", "exit-intent", "data.element must be an object, not str"),
    (
        FORM,
        "data.element.elements.0.value",
        {"v": 1},
        "data.element.elements[0].value must be text, not dict",
    ),
    (
        FORM,
        "data.element.elements.0.value",
        ["a@b.co"],
        "data.element.elements[0].value must be text, not list",
    ),
    (FORM, "data.element.elements.0.value", True, "data.element.elements[0].value must be text, not bool"),
    (FORM, "data.element.id", {"x": 1}, "data.element.id must be text or a number, not dict"),
    (CHECKOUT, "data.checkout", "ct5001", "data.checkout must be an object, not str"),
    (CHECKOUT, "data.checkout", [1], "data.checkout must be an object, not list"),
    (CHECKOUT, "data.checkout.email", {"a": 1}, "email must be text, not dict"),
    (
        CHECKOUT,
        "data.checkout.shippingAddress",
        [1],
        "data.checkout.shippingAddress must be an object, not list",
    ),
    (CHECKOUT, "data.checkout.totalPrice", 84, "data.checkout.totalPrice must be an object, not int"),
    (
        CHECKOUT,
        "data.checkout.totalPrice.amount",
        [84],
        "data.checkout.totalPrice.amount must be text or a number",
    ),
    (CHECKOUT, "data.checkout.order", "5001", "data.checkout.order must be an object, not str"),
    (CHECKOUT, "data.checkout.token", ["ct"], "data.checkout.token must be text or a number, not list"),
    (CHECKOUT, "context.document", "x", "context.document must be an object, not str"),
    (CHECKOUT, "context.document.location", 1, "context.document.location must be an object, not int"),
    (CHECKOUT, "context.document.location.href", {"u": 1}, "context.document.location.href must be text or"),
    (CHECKOUT, "context.document.referrer", [], "context.document.referrer must be text or a number"),
    (CHECKOUT, "customer", ["7001"], "customer must be an object"),
    (CHECKOUT, "customer", {"id": {"gid": 7001}}, "shopify_customer must be text, not dict"),
    (CHECKOUT, "customer", {"email": True}, "email must be text, not bool"),
    (CHECKOUT, "seq", {"n": 1}, "seq must be text or a number, not dict"),
    (PRODUCT, "data.productVariant", "41", "data.productVariant must be an object, not str"),
    (PRODUCT, "data.productVariant.product", 4, "data.productVariant.product must be an object, not int"),
    (PRODUCT, "data.productVariant.sku", ["LS"], "data.productVariant.sku must be text or a number"),
    (PRODUCT, "data.cartLine", [], "data.cartLine must be an object, not list"),
    (SEARCH, "data.cartLine", {"merchandise": "41"}, "data.cartLine.merchandise must be an object, not str"),
    (SEARCH, "data.searchResult", "linen", "data.searchResult must be an object, not str"),
    (
        SEARCH,
        "data.searchResult.query",
        ["linen"],
        "data.searchResult.query must be text or a number",
    ),
]


@pytest.mark.parametrize(
    ("source", "path", "value", "reason"), CASES, ids=[f"{c[1]}={c[2]!r}" for c in CASES]
)
def test_a_pixel_event_with_a_nested_field_of_the_wrong_shape_is_refused_beside_the_valid_ones(
    client, ishop, source, path, value, reason
):
    event = broken(source, path, value)
    answer = post_pixel(client, [fixture("pixel/page_viewed.json"), event])
    assert answer.status_code == 200, answer.get_data(as_text=True)[:300]
    body = answer.get_json()
    assert (body["accepted"], body["dead_lettered"]) == (1, 1)
    [refused] = body["refused"]
    assert refused.startswith("events[1]: ") and reason in refused, refused
    drain_shop(ishop.id)
    db.session.expire_all()
    rows = {r.external_id: r for r in db.session.scalars(sa.select(WebhookDelivery))}
    assert rows["refused:broken-1"].status == "dead"
    assert rows["refused:broken-1"].last_error == f"BadPayload: {refused}"
    assert rows["sh-pv-1"].status == "processed"
    # Alone, it is a 400 with the same reason: never a 500, nothing stored.
    alone = post_pixel(client, {**event, "id": "broken-2"})
    assert alone.status_code == 400 and reason in alone.get_json()["error"]["message"]


def test_form_fields_that_are_not_contacts_may_hold_any_value(client, ishop):
    """A checkbox's ``true``, a quantity's number or an empty field is nobody's identity: read past."""
    event = fixture(FORM[0])
    event["data"]["element"]["elements"] += [
        {"name": "accepts_marketing", "type": "checkbox", "value": True},
        {"name": "quantity", "type": "number", "value": 2},
        {"name": "note", "type": "text", "value": None},
        {"name": "email_confirm", "type": "email", "value": None},
    ]
    answer = post_pixel(client, event)
    assert answer.status_code == 200 and answer.get_json()["accepted"] == 1, answer.get_data(as_text=True)
    drain_shop(ishop.id)
    assert profile_of(ishop, "email", "sarah.jones@acme-corp.com").id == (
        profile_of(ishop, "web_client", "c-phone-sarah").id
    )
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Event)) >= 1
