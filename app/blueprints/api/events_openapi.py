"""OpenAPI 3.1 path item for ``POST /events``: the fields, and the event types the API acts on.

CONTRACT.md names the sources (a support touch, a push open or dismissal, a marketplace
order, a POS visit from another system) but not their type names; a client learns them here.
"""

from app.blueprints.api.openapi_parts import TIME, json_post
from app.services.engagement import CHANNELS as ENGAGEMENT_CHANNELS
from app.services.engagement import METRICS
from app.services.ingest.api_events import CHANNELS, IDENTIFIER_KEYS

EVENT = {
    "type": "object",
    "required": ["type", "occurred_at", "identifiers"],
    "additionalProperties": False,  # a misspelt field is a 400, not lost
    "properties": {
        "type": {
            "type": "string",
            "pattern": r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)*$",
            "maxLength": 60,
            "description": (
                "What happened. Engagement, counted on the profile: "
                + ", ".join(f"{c}.<{'|'.join(METRICS)}>" for c in ENGAGEMENT_CHANNELS)
                + ". A marketplace order: order.placed with channel marketplace (properties order_id, "
                "total, currency, shop_total when in another currency, marketplace, number, line_items "
                "[{product_id, sku, title, quantity, price}]). Its refund: order.refunded with channel "
                "marketplace (properties order_id, amount, currency, shop_amount when in another "
                "currency, marketplace). Anything else (support.contacted, pos.visited…) is kept on "
                "the profile's timeline as given."
            ),
        },
        "occurred_at": TIME,
        "identifiers": {
            "type": "object",
            "minProperties": 1,
            "properties": {key: {"type": ["string", "integer"]} for key in IDENTIFIER_KEYS},
            "additionalProperties": False,
            "description": "who it concerns; at least one must be usable once normalised",
        },
        "channel": {"type": "string", "enum": sorted(CHANNELS)},
        "properties": {"type": "object", "description": "the event's own details, kept as given"},
        "id": {
            "type": ["string", "integer"],
            "maxLength": 255,
            "description": "your id of the event: sending it again changes nothing",
        },
    },
}

OPENAPI_PATHS = {
    "/events": json_post(
        "Record a signal from a source without a provider webhook (support, push, "
        "marketplace, POS); stored durably, then applied by a worker",
        EVENT,
        {
            "type": "object",
            "properties": {"event_id": {"type": "string"}, "duplicate": {"type": "boolean"}},
        },
        {
            "400": {"description": "not an event: the message names the field and why"},
            "401": {"description": "missing or bad bearer token"},
        },
        status="202",
        description="stored (or a resend of one stored before)",
    )
}
