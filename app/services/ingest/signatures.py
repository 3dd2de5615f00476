"""Each provider's signature scheme, checked on the raw body before anything is parsed.

All comparisons are constant-time (``hmac.compare_digest``). A missing
secret on the shop means the provider is not configured: nothing verifies.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Iterable


def _equal(expected: str | bytes, given: str | bytes | None) -> bool:
    if not given:
        return False
    if isinstance(expected, str):
        expected = expected.encode()
    if isinstance(given, str):
        given = given.encode()
    return hmac.compare_digest(expected, given)


def verify_shopify(secret: str | None, body: bytes, header: str | None) -> bool:
    """``X-Shopify-Hmac-Sha256`` = base64(HMAC-SHA256(raw body, app secret))."""
    if not secret:
        return False
    digest = hmac.new(secret.encode(), body, hashlib.sha256).digest()
    return _equal(base64.b64encode(digest), (header or "").strip())


def verify_whatsapp(app_secret: str | None, body: bytes, header: str | None) -> bool:
    """``X-Hub-Signature-256`` = ``sha256=`` + hex HMAC-SHA256(raw body, app secret)."""
    if not app_secret:
        return False
    digest = hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()
    return _equal("sha256=" + digest, (header or "").strip().lower())


def twilio_signature(auth_token: str, url: str, params: Iterable[tuple[str, str]]) -> str:
    """base64(HMAC-SHA1(auth token, full URL + each POST key and value)), as Twilio computes it:
    keys in order and, for a key posted more than once, each distinct value in order."""
    payload = url + "".join(k + v for k, v in sorted(set(params)))
    return base64.b64encode(hmac.new(auth_token.encode(), payload.encode(), hashlib.sha1).digest()).decode()


def verify_twilio(
    auth_token: str | None, urls: Iterable[str], params: list[tuple[str, str]], header: str | None
) -> bool:
    """``X-Twilio-Signature`` over any of ``urls`` (the URL as Twilio saw it, behind proxies)."""
    if not auth_token:
        return False
    return any(_equal(twilio_signature(auth_token, url, params), (header or "").strip()) for url in urls)


def load_sendgrid_key(public_key: str):
    """SendGrid's verification key, PEM or base64 DER (raises ValueError, TypeError or binascii.Error)."""
    from cryptography.hazmat.primitives.serialization import load_der_public_key, load_pem_public_key

    text = public_key.strip()
    if text.startswith("-----BEGIN"):
        return load_pem_public_key(text.encode())
    return load_der_public_key(base64.b64decode(text))


def verify_sendgrid(
    public_key: str | None, body: bytes, signature: str | None, timestamp: str | None
) -> bool:
    """SendGrid signed event webhook: ECDSA-SHA256 over timestamp + raw body.

    ``signature`` is ``X-Twilio-Email-Event-Webhook-Signature`` (base64 DER),
    ``timestamp`` is ``X-Twilio-Email-Event-Webhook-Timestamp``.
    """
    if not public_key or not signature or not timestamp:
        return False
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    try:
        key = load_sendgrid_key(public_key)
        key.verify(base64.b64decode(signature), timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError, TypeError, binascii.Error):
        return False
    return True
