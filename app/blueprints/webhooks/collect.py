"""``/collect``: the storefront pixel, public, CORS-enabled, validated and rate-limited."""

from __future__ import annotations

from collections import Counter

from flask import request

from app.blueprints.webhooks import bp
from app.blueprints.webhooks.helpers import accept, error, parse_json, raw_body, shop_or_404
from app.blueprints.webhooks.ratelimit import allow, seconds_to_next_window
from app.services.ingest.inbox import store_deliveries
from app.services.ingest.pixel import dead_letters, parse_events

CORS_HEADERS = {
    "Access-Control-Allow-Methods": "POST, OPTIONS",
    "Access-Control-Allow-Headers": "Content-Type",
    "Access-Control-Max-Age": "86400",
}


@bp.after_request
def add_cors(response):
    """Let any storefront origin post events (no cookies are read, so no credentials are allowed)."""
    if request.endpoint == "webhooks.collect":
        response.headers["Access-Control-Allow-Origin"] = request.headers.get("Origin") or "*"
        response.vary.add("Origin")
        response.headers.update(CORS_HEADERS)
    return response


@bp.route("/collect", methods=["POST", "OPTIONS"])
def collect():
    """Store one pixel event or a batch, each under its event id, then queue them; a batch's
    malformed events go to the dead-letter queue beside them."""
    if request.method == "OPTIONS":
        return "", 204  # the CORS preflight; headers are added below
    body = raw_body()
    checked = parse_events(parse_json(body))
    events = checked.events
    shop = shop_or_404(events[0]["shop"])
    if not _within_limits(shop.id, events, len(checked.rejected)):
        body, status = error(429, "rate_limited", "too many events from this client; slow down")
        return body, status, {"Retry-After": str(seconds_to_next_window())}
    items = [(e["name"], e["id"].strip(), e) for e in events]
    return accept(store_deliveries(shop, "pixel", items, dead_letters(checked)), checked)


def _within_limits(shop_id: int, events: list[dict], refused: int) -> bool:
    """Charge each client its own events (a browser batches its own; a client over its limit
    must not get through in another's batch), the refused ones to the first; False if any is over."""
    charges = Counter(f"{shop_id}:{e['clientId']}" for e in events)
    charges[f"{shop_id}:{events[0]['clientId']}"] += refused
    return allow(charges)
