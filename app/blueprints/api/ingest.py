"""API: ``POST /events`` (generic signals) and ``GET /ingest/status``."""

import uuid

from flask import g, jsonify

from app.blueprints.api import bp, json_body
from app.services.ingest.api_events import check_request
from app.services.ingest.inbox import ingest_status, store_delivery


@bp.post("/events")
def post_event():
    """Store a generic event durably and queue it; 202 with its id (an ``id`` in the body dedupes)."""
    body = check_request(json_body(), g.api_shop)
    given = body.get("id")  # 0 is an id too
    event_id = str(uuid.uuid4() if given is None else given)
    stored = store_delivery(g.api_shop, "api", body["type"], event_id, body)
    from app.blueprints.webhooks.helpers import accept

    accept([stored])
    return jsonify({"event_id": event_id, "duplicate": not stored.created}), 202


@bp.get("/ingest/status")
def status():
    """Counts of this shop's deliveries: received, pending, processed, dead_letter (and waiting)."""
    return jsonify(ingest_status(g.api_shop.id))
