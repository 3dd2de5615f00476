"""Bad input anywhere in a realistic payload: never a 500, never a delivery left unworked,
and the valid delivery sent after it is still applied.

Each example takes a real provider payload from the shared fixtures, breaks it in a few
places (a value replaced by another type, a huge number, NaN, a NUL byte, a date that is
no date, a missing key), signs it as the provider would and sends it, followed by a clean
page view. The broken delivery may be refused (4xx with a reason), or accepted and then
applied or dead-lettered at once with the reason; it may not be answered 500, left pending, or
take the clean delivery down with it.
"""

from __future__ import annotations

import json
import os
from urllib.parse import parse_qsl, urlencode

import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.extensions import db
from app.models import Event, WebhookDelivery
from tests.conftest import _truncate_all
from tests.ingest_support import (
    fixture,
    fixture_bytes,
    make_ingest_shop,
    post_pixel,
    post_shopify,
    sendgrid_post,
    twilio_post,
    whatsapp_post,
)

SHOPIFY = {
    "shopify/orders_create_web.json": "orders/create",
    "shopify/orders_create_pos.json": "orders/create",
    "shopify/orders_create_guest.json": "orders/create",
    "shopify/orders_create_multicurrency.json": "orders/updated",
    "shopify/orders_cancelled.json": "orders/cancelled",
    "shopify/refunds_create.json": "refunds/create",
    "shopify/customers_create_2025_10.json": "customers/create",
    "shopify/customers_update_2024_10_legacy_consent.json": "customers/update",
    "shopify/customers_email_marketing_consent_update.json": "customers/email_marketing_consent_update",
    "shopify/customers_marketing_consent_update.json": "customers/marketing_consent_update",
}
JSON_SOURCES = [
    *SHOPIFY,
    "pixel/page_viewed.json",
    "pixel/checkout_completed.json",
    "pixel/form_submitted_exit_intent.json",
    "pixel/batch.json",
    "sendgrid/events.json",
    "whatsapp/inbound_text.json",
    "whatsapp/status_read.json",
    "api",
]
API_EVENT = {
    "type": "support.ticket_opened",
    "occurred_at": "2026-10-05T09:00:00+00:00",
    "identifiers": {"email": "sarah@example.org", "phone": "+447700900123"},
    "channel": "support",
    "properties": {"subject": "Where is my order?"},
}

ODD_TEXT = st.sampled_from(
    [
        "",
        "\x00",
        "a\x00b",
        "2026-13-45T99:99:99Z",
        "9999-12-31T23:59:59Z",
        "0001-01-01T00:00:00Z",
        "NaN",
        "-1",
        "1e400",
        "x" * 5000,
        "+44 7700 900123",
        "not-an-email",
        "💥",
        "\ud800",
    ]
)
ODD_NUMBER = st.sampled_from([0, -1, 2**63, -(2**63) - 1, 10**30, 1e308, float("nan"), float("inf"), 0.1])
LEAF = st.none() | st.booleans() | ODD_NUMBER | ODD_TEXT | st.integers() | st.text(max_size=12)
VALUE = st.recursive(
    LEAF,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=5,
)
MUTATION = st.tuples(st.integers(min_value=0), st.sampled_from(["replace", "delete"]), VALUE)


def _paths(node, prefix=()):
    """Every place in a JSON document: the keys and indices that lead to it."""
    yield prefix
    if isinstance(node, dict):
        for key, child in node.items():
            yield from _paths(child, (*prefix, key))
    elif isinstance(node, list):
        for index, child in enumerate(node):
            yield from _paths(child, (*prefix, index))


def mutate(doc, mutations):
    """Apply ``(where, action, value)`` mutations; ``where`` picks a place modulo their number."""
    for where, action, value in mutations:
        places = list(_paths(doc))
        path = places[where % len(places)]
        if not path:
            doc = value
            continue
        parent = doc
        for key in path[:-1]:
            parent = parent[key]
        if action == "delete" and isinstance(parent, dict):
            del parent[path[-1]]
        else:
            parent[path[-1]] = value
    return doc


def _send(client, shop, source: str, mutations, n: int):
    """Send the broken payload the way its provider would."""
    if source == "twilio":
        params = dict(parse_qsl(fixture_bytes("twilio/inbound_stop.form").decode(), keep_blank_values=True))
        for where, action, value in mutations:
            keys = sorted(params)
            key = keys[where % len(keys)]
            if action == "delete":
                params.pop(key)
            else:
                params[key] = value if isinstance(value, str) else json.dumps(value)
            if not params:
                break
        return twilio_post(client, shop.domain, urlencode(params).encode())
    doc = mutate(API_EVENT.copy() if source == "api" else fixture(source), mutations)
    raw = json.dumps(doc).encode(errors="surrogatepass")  # NaN and lone surrogates go out as sent
    if source in SHOPIFY:
        return post_shopify(client, shop, SHOPIFY[source], raw, f"fuzz-{n}")
    if source.startswith("pixel/"):
        return client.post(
            "/collect", data=raw, content_type="text/plain", headers={"Origin": "https://demo.myshopify.com"}
        )
    if source.startswith("sendgrid/"):
        return sendgrid_post(client, shop.domain, raw)
    if source.startswith("whatsapp/"):
        return whatsapp_post(client, shop.domain, raw)
    return client.post(
        "/api/v1/events",
        data=raw,
        content_type="application/json",
        headers={"Authorization": f"Bearer {shop.token}"},
    )


def _clean_page_view(n: int) -> dict:
    body = fixture("pixel/page_viewed.json")
    body["id"] = f"clean-{n}"
    return body


SOURCES = st.sampled_from([*JSON_SOURCES, "twilio"])


@settings(
    max_examples=int(os.environ.get("C360_FUZZ_EXAMPLES", 60)),
    deadline=None,
    derandomize=True,  # the same examples every run (C360_FUZZ_EXAMPLES=2000 looks further)
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(source=SOURCES, mutations=st.lists(MUTATION, min_size=1, max_size=3))
def test_a_broken_payload_is_refused_or_dead_lettered_and_spares_the_next_one(
    client, drain, source, mutations
):
    _truncate_all()
    shop = make_ingest_shop()
    answer = _send(client, shop, source, mutations, 1)
    assert answer.status_code < 500, answer.get_data(as_text=True)[:300]
    if answer.status_code >= 400:
        assert answer.get_json()["error"]["message"]
    clean = post_pixel(client, _clean_page_view(2))
    assert clean.status_code == 200
    drain()
    db.session.expire_all()
    rows = db.session.scalars(sa.select(WebhookDelivery)).all()
    for row in rows:
        # Not applied: dead-lettered at once with the reason (it would fail the same way at every retry).
        assert row.status in ("processed", "dead"), (row.provider, row.status, row.last_error)
        if row.status == "dead":
            assert row.last_error.startswith("BadPayload: "), row.last_error
            # Never attempted when refused at the door beside valid events of its batch.
            assert row.attempts == (0 if row.external_id.startswith("refused:") else 1), row.last_error
    assert db.session.scalar(
        sa.select(sa.func.count()).select_from(Event).where(Event.external_id.like("%clean-2%"))
    )
