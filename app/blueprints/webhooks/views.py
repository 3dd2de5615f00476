"""Provider webhooks: verify the signature on the raw body, store, commit, enqueue (STYLE §8)."""

from __future__ import annotations

import hmac
import json
from urllib.parse import parse_qsl

from flask import request

from app.blueprints.webhooks import bp
from app.blueprints.webhooks.helpers import accept, error, parse_json, raw_body, register_errors, shop_or_404
from app.config import provider_settings
from app.models.base import utcnow
from app.services.ingest import sendgrid, twilio, whatsapp
from app.services.ingest.common import BadPayload, optional_time
from app.services.ingest.inbox import store_deliveries, store_delivery
from app.services.ingest.shopify import check_shopify
from app.services.ingest.signatures import verify_sendgrid, verify_shopify, verify_twilio, verify_whatsapp

register_errors(bp)
SHOPIFY_KEPT_HEADERS = (
    "X-Shopify-Topic",
    "X-Shopify-Shop-Domain",
    "X-Shopify-Webhook-Id",
    "X-Shopify-Event-Id",
    "X-Shopify-Triggered-At",
    "X-Shopify-API-Version",
)


def _unauthorized():
    return error(401, "bad_signature", "missing or invalid signature")


def _triggered_at():
    try:
        return optional_time(request.headers.get("X-Shopify-Triggered-At"))
    except BadPayload:
        return None


@bp.post("/webhooks/shopify")
def shopify():
    """Accept a Shopify webhook; a repeated X-Shopify-Webhook-Id changes nothing."""
    body = raw_body()
    shop = shop_or_404(request.headers.get("X-Shopify-Shop-Domain"))
    if not verify_shopify(shop.shopify_secret, body, request.headers.get("X-Shopify-Hmac-Sha256")):
        return _unauthorized()
    topic, webhook_id = (
        request.headers.get("X-Shopify-Topic", ""),
        request.headers.get("X-Shopify-Webhook-Id"),
    )
    if not webhook_id:
        raise BadPayload("X-Shopify-Webhook-Id is required")
    check_shopify(shop, topic, parse_json(body))
    stored = store_delivery(
        shop,
        "shopify",
        topic,
        webhook_id,
        body,
        headers={h: request.headers[h] for h in SHOPIFY_KEPT_HEADERS if h in request.headers},
        event_id=request.headers.get("X-Shopify-Event-Id"),
        triggered_at=_triggered_at(),
        api_version=request.headers.get("X-Shopify-API-Version"),
    )
    if topic == "app/uninstalled" and stored.created:
        shop.uninstalled_at = _triggered_at() or utcnow()
    return accept([stored])


@bp.post("/webhooks/sendgrid/<shop_domain>")
def sendgrid_events(shop_domain: str):
    """Accept a SendGrid signed event batch; each event is stored under its sg_event_id, and one
    we cannot use goes to the dead-letter queue (a non-2xx would have the batch sent for 72 hours)."""
    body = raw_body()
    shop = shop_or_404(shop_domain)
    headers = request.headers
    if not verify_sendgrid(
        shop.sendgrid_public_key,
        body,
        headers.get("X-Twilio-Email-Event-Webhook-Signature"),
        headers.get("X-Twilio-Email-Event-Webhook-Timestamp"),
    ):
        return _unauthorized()
    checked = sendgrid.parse_events(parse_json(body))
    items = [(e["event"], e["sg_event_id"], e) for e in checked.events]
    stored = store_deliveries(shop, "sendgrid", items, sendgrid.dead_letters(checked))
    return accept(stored, checked)


@bp.post("/webhooks/twilio/<shop_domain>")
def twilio_sms(shop_domain: str):
    """Accept a Twilio status callback or inbound SMS; answers empty TwiML."""
    body = raw_body()
    shop = shop_or_404(shop_domain)
    try:
        params = parse_qsl(body.decode("utf-8"), keep_blank_values=True)
    except UnicodeDecodeError:
        params = []
    # Twilio signs the URL byte for byte as configured: the one the server received (its query
    # still escaped as sent, RAW_URI/REQUEST_URI), and Werkzeug's rebuilt one, on http or https.
    sent = request.environ.get("RAW_URI") or request.environ.get("REQUEST_URI")
    urls = {request.url} | ({request.host_url.rstrip("/") + sent} if sent else set())
    urls |= {url.replace("http://", "https://", 1) for url in urls}
    public = str(provider_settings().get("C360_PUBLIC_URL") or "").rstrip("/")
    if public:  # behind a proxy, Twilio signed the public address the send named (StatusCallback)
        urls |= {public + request.full_path.rstrip("?")} | ({public + sent} if sent else set())
    if not verify_twilio(shop.twilio_auth_token, urls, params, request.headers.get("X-Twilio-Signature")):
        return _unauthorized()
    topic, external_id = twilio.parse_form(dict(params))
    response, status = accept([store_delivery(shop, "twilio", topic, external_id, body)])
    return '<?xml version="1.0" encoding="UTF-8"?><Response></Response>', status, {"Content-Type": "text/xml"}


@bp.get("/webhooks/whatsapp/<shop_domain>")
def whatsapp_verify(shop_domain: str):
    """Answer Meta's subscription check with ``hub.challenge`` when the verify token matches."""
    shop = shop_or_404(shop_domain)
    token = request.args.get("hub.verify_token", "")
    expected = shop.whatsapp_verify_token or ""
    if (
        request.args.get("hub.mode") != "subscribe"
        or not expected
        or not hmac.compare_digest(expected.encode(), token.encode())
    ):
        return error(403, "forbidden", "verify token does not match")
    return request.args.get("hub.challenge", ""), 200, {"Content-Type": "text/plain"}


@bp.post("/webhooks/whatsapp/<shop_domain>")
def whatsapp_events(shop_domain: str):
    """Accept a WhatsApp Cloud API notification; each message and status is stored on its own."""
    body = raw_body()
    shop = shop_or_404(shop_domain)
    if not verify_whatsapp(shop.whatsapp_app_secret, body, request.headers.get("X-Hub-Signature-256")):
        return _unauthorized()
    items, checked = whatsapp.split_items(parse_json(body))
    stored = [
        store_delivery(shop, "whatsapp", topic, ext, json.dumps(item).encode()) for topic, ext, item in items
    ]
    stored += store_deliveries(shop, "whatsapp", [], whatsapp.dead_letters(checked))
    return accept(stored, checked)
