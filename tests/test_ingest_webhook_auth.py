"""Webhook endpoints refuse what is not signed, not theirs, too large or not the provider's format."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa

from app.extensions import db
from app.models import Event, WebhookDelivery
from tests.helpers import make_shop
from tests.ingest_support import (
    SG_KEY,
    TWILIO_TOKEN,
    WA_VERIFY,
    fixture,
    fixture_bytes,
    ishop_fixture,
    post_shopify,
    sendgrid_post,
    shopify_sign,
    twilio_post,
    whatsapp_post,
)

ishop = ishop_fixture


def stored() -> int:
    return db.session.scalar(sa.select(sa.func.count()).select_from(WebhookDelivery))


def test_valid_shopify_signature_is_accepted_and_stored(client, ishop, drain):
    response = post_shopify(client, ishop, "orders/create", fixture("shopify/orders_create_web.json"), "wh-1")
    drain()
    assert response.status_code == 200
    row = db.session.scalar(sa.select(WebhookDelivery))
    assert (row.provider, row.topic, row.external_id) == ("shopify", "orders/create", "wh-1")
    assert row.event_id == "ev-wh-1" and row.api_version == "2025-10" and row.triggered_at is not None
    assert row.status == "processed"


def test_a_chunked_body_over_one_mebibyte_is_413_not_cut_short(client, ishop):
    """A body sent in chunks names no length up front: it is refused as too large, not read in part
    and then found not to be JSON (or not to match its signature)."""
    import io

    events = [{**fixture("pixel/page_viewed.json"), "id": f"big-{n}"} for n in range(3000)]
    raw = json.dumps(events).encode()
    assert len(raw) > 1024 * 1024
    chunked = {"wsgi.input_terminated": True}
    shopify = {"X-Shopify-Topic": "orders/create"}
    api = {"Authorization": f"Bearer {ishop.token}"}
    for path, headers in (("/collect", {}), ("/webhooks/shopify", shopify), ("/api/v1/events", api)):
        response = client.post(
            path,
            input_stream=io.BytesIO(raw),
            content_type="application/json",
            headers={"Transfer-Encoding": "chunked", **headers},
            environ_overrides=chunked,
        )
        assert response.status_code == 413, response.get_data(as_text=True)
        assert response.get_json()["error"]["code"] == "too_large"
    assert stored() == 0


@pytest.mark.parametrize(
    "case",
    ["invalid", "missing", "wrong_secret", "one_byte_altered"],
)
def test_bad_shopify_signature_is_401_and_stores_nothing(client, ishop, case):
    raw = json.dumps(fixture("shopify/orders_create_web.json")).encode()
    headers = {}
    body = raw
    if case == "invalid":
        headers["X-Shopify-Hmac-Sha256"] = "bm90LWEtc2lnbmF0dXJl"
    elif case == "missing":
        headers["X-Shopify-Hmac-Sha256"] = ""
    elif case == "wrong_secret":
        headers["X-Shopify-Hmac-Sha256"] = shopify_sign("secret-of-another-shop", raw)
    else:
        body = raw.replace(b'"84.00"', b'"85.00"', 1)
        headers["X-Shopify-Hmac-Sha256"] = shopify_sign(ishop.secret, raw)
    response = post_shopify(client, ishop, "orders/create", body, "wh-bad", headers=headers)
    assert response.status_code == 401
    assert response.get_json()["error"]["code"] == "bad_signature"
    assert stored() == 0
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Event)) == 0


def test_another_shops_secret_cannot_post_for_this_shop(client, ishop):
    other = make_shop("bravo.myshopify.com")
    body = fixture("shopify/orders_create_web.json")
    response = post_shopify(client, ishop, "orders/create", body, "wh-x", secret=other.secret)
    assert response.status_code == 401
    assert stored() == 0


def test_unknown_shop_is_404(client, ishop):
    body = fixture("shopify/orders_create_web.json")
    response = post_shopify(client, ishop, "orders/create", body, "wh-1", domain="nobody.myshopify.com")
    assert response.status_code == 404
    assert response.get_json()["error"]["code"] == "not_found"
    assert client.post("/webhooks/twilio/nobody.myshopify.com", data="a=b").status_code == 404
    assert client.post("/webhooks/whatsapp/nobody.myshopify.com", data="{}").status_code == 404
    assert client.post("/webhooks/sendgrid/nobody.myshopify.com", data="[]").status_code == 404


def test_body_over_one_mebibyte_is_413(client, ishop):
    raw = b'{"pad": "' + b"x" * (1024 * 1024 + 10) + b'"}'
    response = post_shopify(client, ishop, "orders/create", raw, "wh-big")
    assert response.status_code == 413
    assert response.get_json()["error"]["code"] == "too_large"
    assert client.post("/collect", data=raw, content_type="application/json").status_code == 413
    assert stored() == 0


@pytest.mark.parametrize(
    ("topic", "raw", "reason"),
    [
        ("orders/create", b"not json at all", "not valid JSON"),
        ("orders/create", b"[1, 2]", "JSON object"),
        ("orders/create", b'{"name": "#1"}', "order.id is required"),
        ("refunds/create", b'{"id": 1}', "order_id"),
        ("customers/email_marketing_consent_update", b'{"customer_id": 1}', "email_marketing_consent"),
        ("orders/exploded", b'{"id": 1}', "unsupported topic"),
    ],
)
def test_not_the_providers_format_is_400_with_a_reason(client, ishop, topic, raw, reason):
    response = post_shopify(client, ishop, topic, raw, "wh-400")
    assert response.status_code == 400
    assert reason in response.get_json()["error"]["message"]
    assert stored() == 0


def test_missing_webhook_id_is_400(client, ishop):
    body = fixture("shopify/orders_create_web.json")
    response = post_shopify(client, ishop, "orders/create", body, "")
    assert response.status_code == 400
    assert "Webhook-Id" in response.get_json()["error"]["message"]


def test_each_provider_answers_401_until_its_secret_is_set(client, db):
    bare = make_shop("bare.myshopify.com")  # Shopify secret only
    assert twilio_post(client, bare.domain, fixture_bytes("twilio/inbound_stop.form")).status_code == 401
    assert whatsapp_post(client, bare.domain, fixture("whatsapp/inbound_text.json")).status_code == 401
    assert sendgrid_post(client, bare.domain, fixture("sendgrid/events.json")).status_code == 401
    assert stored() == 0


def test_twilio_signature_must_match_url_and_params(client, ishop):
    raw = fixture_bytes("twilio/inbound_stop.form")
    assert twilio_post(client, ishop.domain, raw, token="wrong-token").status_code == 401
    assert twilio_post(client, ishop.domain, raw, signature="").status_code == 401
    altered = raw.replace(b"Stop", b"Stap")
    from tests.ingest_support import twilio_signature  # signed over the original params

    good_sig = twilio_signature(
        TWILIO_TOKEN,
        f"http://localhost/webhooks/twilio/{ishop.domain}",
        __import__("urllib.parse").parse.parse_qsl(raw.decode(), keep_blank_values=True),
    )
    assert twilio_post(client, ishop.domain, altered, signature=good_sig).status_code == 401
    assert stored() == 0
    assert twilio_post(client, ishop.domain, raw).status_code == 200


def test_whatsapp_signature_with_wrong_secret_is_401(client, ishop):
    response = whatsapp_post(client, ishop.domain, fixture("whatsapp/inbound_text.json"), secret="nope")
    assert response.status_code == 401
    assert stored() == 0


def test_sendgrid_signature_from_another_key_or_altered_body_is_401(client, ishop):
    from cryptography.hazmat.primitives.asymmetric import ec

    events = fixture("sendgrid/events.json")
    other_key = ec.generate_private_key(ec.SECP256R1())
    assert sendgrid_post(client, ishop.domain, events, key=other_key).status_code == 401
    raw = json.dumps(events).encode()
    assert SG_KEY is not None
    response = client.post(
        f"/webhooks/sendgrid/{ishop.domain}",
        data=raw + b" ",
        content_type="application/json",
        headers={
            "X-Twilio-Email-Event-Webhook-Signature": "MEUCIQ==",
            "X-Twilio-Email-Event-Webhook-Timestamp": "1",
        },
    )
    assert response.status_code == 401
    assert stored() == 0


def test_wrong_shape_from_other_providers_is_400(client, ishop):
    assert sendgrid_post(client, ishop.domain, {"event": "open"}).status_code == 400
    bad_event = sendgrid_post(client, ishop.domain, [{"event": "teleported", "email": "a@b.co"}])
    assert "unknown event" in bad_event.get_json()["error"]["message"]
    assert whatsapp_post(client, ishop.domain, {"object": "x"}).status_code == 400
    assert twilio_post(client, ishop.domain, b"Foo=bar").status_code == 400
    assert stored() == 0


def test_whatsapp_get_answers_the_challenge_only_with_the_verify_token(client, ishop):
    url = f"/webhooks/whatsapp/{ishop.domain}"
    ok = client.get(
        url,
        query_string={"hub.mode": "subscribe", "hub.verify_token": WA_VERIFY, "hub.challenge": "1158201444"},
    )
    assert ok.status_code == 200 and ok.get_data(as_text=True) == "1158201444"
    bad = client.get(
        url, query_string={"hub.mode": "subscribe", "hub.verify_token": "guess", "hub.challenge": "1"}
    )
    assert bad.status_code == 403


def test_a_twilio_callback_signed_over_the_public_address_is_accepted_behind_a_proxy(
    app, client, ishop, monkeypatch
):
    # Twilio signs the URL the send named (C360_PUBLIC_URL); the app behind a proxy sees another host.
    from urllib.parse import parse_qsl

    from tests.ingest_support import twilio_signature

    raw = fixture_bytes("twilio/status_delivered.form")
    public = f"https://c360.example.net/webhooks/twilio/{ishop.domain}"
    signature = twilio_signature(TWILIO_TOKEN, public, parse_qsl(raw.decode(), keep_blank_values=True))
    assert twilio_post(client, ishop.domain, raw, signature=signature).status_code == 401
    monkeypatch.setitem(app.config, "C360_PUBLIC_URL", "https://c360.example.net")
    assert twilio_post(client, ishop.domain, raw, signature=signature).status_code == 200
    # Another address, even with the public one set, is still refused.
    forged = twilio_signature(
        TWILIO_TOKEN, "https://evil.example/x", parse_qsl(raw.decode(), keep_blank_values=True)
    )
    assert twilio_post(client, ishop.domain, raw, signature=forged).status_code == 401


def _twilios_own_signature(token: str, url: str, params: list[tuple[str, str]]) -> str:
    """Twilio's reference validator (twilio-python ``RequestValidator.compute_signature``): the URL
    as configured, then each key in order and, for a repeated key, each distinct value in order."""
    import base64
    import hashlib
    import hmac

    text = url
    for key in sorted({k for k, _ in params}):
        for value in sorted({v for k, v in params if k == key}):
            text += key + value
    return base64.b64encode(hmac.new(token.encode(), text.encode(), hashlib.sha1).digest()).decode()


def test_a_twilio_post_is_verified_over_the_url_as_sent_and_repeated_keys_as_twilio_sorts_them(client, ishop):
    """An escaped query (a merchant's own ``?tag=a%7Eb``) was read back unescaped, and a repeated key
    kept its posted order: Twilio's genuine posts, an inbound STOP among them, were 401."""
    path = f"/webhooks/twilio/{ishop.domain}?tag=a%7Eb%2Fc"
    params = [
        ("MessageSid", "SM-raw-1"),
        ("From", "+447911123456"),
        ("To", "+447700900000"),
        ("Body", "STOP"),
        ("MediaUrl", "https://x.test/b"),
        ("MediaUrl", "https://x.test/a"),
    ]
    from urllib.parse import urlencode

    signature = _twilios_own_signature(TWILIO_TOKEN, f"http://localhost{path}", params)
    answer = client.post(
        path,
        data=urlencode(params),
        content_type="application/x-www-form-urlencoded",
        headers={"X-Twilio-Signature": signature},
    )
    assert answer.status_code == 200


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/webhooks/shopify"),
        ("PUT", "/collect"),
        ("GET", "/webhooks/sendgrid/demo.myshopify.com"),
        ("DELETE", "/webhooks/twilio/demo.myshopify.com"),
    ],
)
def test_a_wrong_method_on_a_webhook_endpoint_is_a_json_405_not_an_html_page(client, ishop, method, path):
    answer = client.open(path, method=method)
    assert answer.status_code == 405
    assert answer.get_json()["error"]["code"] == "method_not_allowed"


def test_an_unknown_webhook_path_is_a_json_404_and_console_paths_keep_their_pages(client, ishop):
    for method, path in (
        ("POST", "/webhooks/nowhere/demo.myshopify.com"),
        ("GET", "/collect/x"),
        ("GET", "/webhooks"),
    ):
        answer = client.open(path, method=method, json={})
        assert answer.status_code == 404 and answer.get_json()["error"]["code"] == "not_found", path
    assert client.get("/api/v1/nowhere").get_json()["error"]["code"] == "not_found"
    assert client.get("/nowhere").mimetype == "text/html"
