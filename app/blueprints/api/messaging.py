"""API: consent (``POST /consents``, ``POST /unsubscribe``), the gate and sends."""

from flask import g, jsonify

from app.blueprints.api import bp, json_body
from app.config import provider_settings
from app.extensions import db
from app.models.base import utcnow
from app.services import gate, messaging, messaging_api


@bp.post("/consents")
def post_consent():
    """Append one consent event for the profile holding ``identifier`` (created if new)."""
    result = messaging_api.record_from_request(g.api_shop, json_body())
    db.session.commit()
    return jsonify(result)


@bp.post("/unsubscribe")
def post_unsubscribe():
    """Global unsubscribe: every channel refused from the moment this answers."""
    result = messaging_api.unsubscribe_from_request(g.api_shop, json_body())
    db.session.commit()
    return jsonify(result)


@bp.post("/gate/check")
def gate_check():
    """Ask the gate about one profile and channel (read-only); ``at`` evaluates another moment."""
    body = json_body()
    profile, channel, at = messaging_api.gate_request(g.api_shop, body)
    return jsonify(gate.check(g.api_shop, profile.id, channel, at or utcnow()).as_dict())


@bp.post("/messages")
def post_message():
    """Gate and send one message; the check and the reservation are atomic."""
    args = messaging_api.message_request(g.api_shop, json_body())
    message = messaging.send_message(g.api_shop, **args, config=provider_settings())
    return jsonify(
        {
            "id": message.id,
            "profile_id": message.profile_id,
            "channel": message.channel,
            "source": message.source,
            "status": message.status,
            "reason": message.reason,
            "retry_at": message.retry_at.isoformat() if message.retry_at else None,
        }
    )
