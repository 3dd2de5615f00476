"""The seed's "Sarah uses two emails" story, replayed through the real HTTP pipeline.

The nine requests (``sarah_story.json``, a copy of the shared fixture so the
seed needs nothing outside the repo) are posted to the app's own endpoints
and signed with the shop's secrets, exactly as Shopify and Meta would.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from pathlib import Path

from app.extensions import db

STORY = Path(__file__).with_name("sarah_story.json")


def _retarget(value, old: str, new: str):
    """The story with its shop domain replaced everywhere (bodies, paths, headers)."""
    return json.loads(json.dumps(value).replace(old, new))


def story_requests(domain: str) -> list[dict]:
    """The story's requests for ``domain``."""
    story = json.loads(STORY.read_text())
    return [_retarget(step["request"], story["shop"], domain) for step in story["steps"]]


def signed_headers(shop, endpoint: str, raw: bytes, headers: dict | None) -> dict:
    """The step's headers plus the provider signature over ``raw``."""
    out = dict(headers or {})
    if endpoint.startswith("/webhooks/shopify"):
        digest = hmac.new(shop.shopify_secret.encode(), raw, hashlib.sha256).digest()
        out["X-Shopify-Hmac-Sha256"] = base64.b64encode(digest).decode()
    elif endpoint.startswith("/webhooks/whatsapp/"):
        out["X-Hub-Signature-256"] = (
            "sha256=" + hmac.new(shop.whatsapp_app_secret.encode(), raw, hashlib.sha256).hexdigest()
        )
    return out


def replay_sarah(shop) -> None:
    """Post the story to the real endpoints, in order; raise if any step is refused."""
    from flask import current_app

    if not shop.shopify_secret:
        shop.shopify_secret = secrets.token_hex(16)
    if not shop.whatsapp_app_secret:
        shop.whatsapp_app_secret = secrets.token_hex(16)
    db.session.commit()  # the requests below run in their own sessions
    client = current_app.test_client()
    for number, request in enumerate(story_requests(shop.domain), start=1):
        raw = json.dumps(request["body"]).encode()
        headers = signed_headers(shop, request["endpoint"], raw, request.get("headers"))
        response = client.post(
            request["endpoint"], data=raw, headers=headers, content_type="application/json"
        )
        if response.status_code != 200:
            raise RuntimeError(f"story step {number} was refused: {response.status_code}")
