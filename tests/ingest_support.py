"""Signing helpers and fixtures for the ingest tests."""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy.exc import OperationalError

from app.extensions import db
from app.models import Event
from app.services.identifiers import find_profile_by_identifier
from app.services.ingest import pixel
from app.services.ingest.signatures import twilio_signature
from app.services.profile_view import profile_document
from tests.conftest import FIXTURES
from tests.helpers import make_shop

DOMAIN = "demo.myshopify.com"
TWILIO_TOKEN = "twilio-token-123"
WA_SECRET = "wa-app-secret"
WA_VERIFY = "wa-verify-token"
SG_KEY = ec.generate_private_key(ec.SECP256R1())
SG_PUBLIC = base64.b64encode(
    SG_KEY.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
).decode()


# Events made of what was sent: a derived stage change is not one.
SIGNALS = Event.type != "lifecycle.changed"


def fixture(path: str):
    """A shared fixture body, parsed (a fresh copy each time)."""
    return copy.deepcopy(json.loads((FIXTURES / path).read_text()))


def fixture_bytes(path: str) -> bytes:
    return Path(FIXTURES / path).read_bytes()


def shopify_sign(secret: str, raw: bytes) -> str:
    return base64.b64encode(hmac.new(secret.encode(), raw, hashlib.sha256).digest()).decode()


def post_shopify(
    client,
    shop,
    topic: str,
    body,
    webhook_id: str,
    *,
    secret=None,
    api_version="2025-10",
    domain=None,
    headers=None,
):
    """POST a signed Shopify webhook; ``body`` is a dict or raw bytes."""
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    sent = {
        "X-Shopify-Topic": topic,
        "X-Shopify-Shop-Domain": domain or shop.domain,
        "X-Shopify-Webhook-Id": webhook_id,
        "X-Shopify-Event-Id": f"ev-{webhook_id}",
        "X-Shopify-Triggered-At": "2026-10-03T18:41:05Z",
        "X-Shopify-API-Version": api_version,
        "X-Shopify-Hmac-Sha256": shopify_sign(secret or shop.secret, raw),
    }
    sent.update(headers or {})
    return client.post("/webhooks/shopify", data=raw, headers=sent, content_type="application/json")


def post_pixel(client, body, origin="https://demo.myshopify.com"):
    return client.post(
        "/collect", data=json.dumps(body), content_type="text/plain", headers={"Origin": origin}
    )


def twilio_post(client, domain: str, raw: bytes, *, token=TWILIO_TOKEN, signature=None):
    from urllib.parse import parse_qsl

    url = f"http://localhost/webhooks/twilio/{domain}"
    params = parse_qsl(raw.decode(), keep_blank_values=True)
    sig = signature if signature is not None else twilio_signature(token, url, params)
    return client.post(
        f"/webhooks/twilio/{domain}",
        data=raw,
        content_type="application/x-www-form-urlencoded",
        headers={"X-Twilio-Signature": sig},
    )


def whatsapp_post(client, domain: str, body, *, secret=WA_SECRET):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    sig = "sha256=" + hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()
    return client.post(
        f"/webhooks/whatsapp/{domain}",
        data=raw,
        content_type="application/json",
        headers={"X-Hub-Signature-256": sig},
    )


def sendgrid_post(client, domain: str, body, *, key=SG_KEY, timestamp="1791100600"):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    signature = base64.b64encode(key.sign(timestamp.encode() + raw, ec.ECDSA(hashes.SHA256()))).decode()
    return client.post(
        f"/webhooks/sendgrid/{domain}",
        data=raw,
        content_type="application/json",
        headers={
            "X-Twilio-Email-Event-Webhook-Signature": signature,
            "X-Twilio-Email-Event-Webhook-Timestamp": timestamp,
        },
    )


def make_ingest_shop(domain: str = DOMAIN, **extra):
    """A shop with every provider secret set."""
    return make_shop(
        domain,
        twilio_auth_token=TWILIO_TOKEN,
        whatsapp_app_secret=WA_SECRET,
        whatsapp_verify_token=WA_VERIFY,
        sendgrid_public_key=SG_PUBLIC,
        **extra,
    )


def _ishop(db):
    """The demo-domain shop the shared fixtures name, with every provider configured."""
    return make_ingest_shop()


# Test modules bind it with ``ishop = ishop_fixture``.
ishop_fixture = pytest.fixture(_ishop, name="ishop")


def profile_of(shop, kind: str, value: str):
    """The live profile holding ``kind:value`` (None if nobody does)."""
    db.session.expire_all()
    return find_profile_by_identifier(shop.model, kind, value)


def doc_of(shop, kind: str, value: str) -> dict:
    """The contract profile document of whoever holds ``kind:value``."""
    profile = profile_of(shop, kind, value)
    assert profile is not None, f"nobody holds {kind}:{value}"
    return profile_document(shop.model, profile)


def _flaky(monkeypatch):
    """Make pixel parsing (batch and row paths) fail ``state["failures"]`` times, as a transient DB error."""
    state = {"failures": 1, "calls": 0}
    real = pixel.plan_pixel_event

    def apply(shop, event, delivery_row):
        state["calls"] += 1
        if state["failures"] > 0:
            state["failures"] -= 1
            raise OperationalError("UPDATE profiles", {}, Exception("lock timeout"))
        return real(shop, event, delivery_row)

    monkeypatch.setattr(pixel, "plan_pixel_event", apply)
    return state


# Test modules bind it with ``flaky = flaky_fixture``.
flaky_fixture = pytest.fixture(_flaky, name="flaky")
