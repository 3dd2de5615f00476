"""OpenAPI 3.1 path items for the consent, gate and messages API (merged into ``/openapi.json``)."""

from app.blueprints.api.openapi_parts import TIME, json_post

CHANNEL = {"type": "string", "enum": ["email", "sms", "whatsapp", "push"]}
IDENTIFIER = {
    "type": "string",
    "description": "KIND:VALUE (email, phone, shopify_customer, web_client, amazon_buyer, ebay_user) "
    "or a bare email/phone; a profile is created when none holds it",
}
ERRORS = {
    "400": {"description": "not a JSON object, or a malformed identifier"},
    "401": {"description": "missing or bad bearer token"},
    "404": {"description": "no such profile in this shop"},
    "422": {"description": "a value the API cannot accept; the message says which"},
}
DECISION = {
    "type": "object",
    "properties": {
        "allowed": {"type": "boolean"},
        "reason": {
            "type": ["string", "null"],
            "description": "shop_uninstalled (the store uninstalled the app; before every check) | "
            "erased | global_unsubscribe | no_consent:<channel> | "
            "global_cap_reached:<n>/<cap> | channel_cap_reached:<channel>:<n>/<cap> | fatigue | quiet_hours",
        },
        "retry_at": {
            **TIME,
            "type": ["string", "null"],
            "description": "when the block can clear; null when waiting cannot clear it",
        },
    },
}


def _post(summary: str, body: dict, answer: dict) -> dict:
    return json_post(summary, body, answer, ERRORS)


OPENAPI_PATHS = {
    "/consents": _post(
        "Append one consent event (append-only history); "
        "non-explicit sources (import, sync) never lift an opt-out",
        {
            "type": "object",
            "required": ["identifier", "channel", "status"],
            "properties": {
                "identifier": IDENTIFIER,
                "channel": CHANNEL,
                "status": {"type": "string", "enum": ["opted_in", "opted_out"]},
                "consent_text": {
                    "type": "string",
                    "minLength": 1,
                    "description": "the exact wording shown; required to opt in",
                },
                "source": {
                    "type": "string",
                    "minLength": 1,
                    "description": "checkout, popup, pos, import, api, keyword…; required to opt in "
                    "(an opt-out without one is recorded as api)",
                },
                "captured_at": {
                    **TIME,
                    "description": "when the customer gave or withdrew consent; required to opt in "
                    "(an opt-out without one counts from now)",
                },
                "ip": {"type": "string"},
                "user_agent": {"type": "string"},
                "explicit": {"type": "boolean", "description": "default: false for import/sync, else true"},
            },
        },
        {
            "type": "object",
            "properties": {
                "id": {"type": "integer"},
                "profile_id": {"type": "integer"},
                "states": {"type": "object"},
                "globally_unsubscribed": {"type": "boolean"},
            },
        },
    ),
    "/unsubscribe": _post(
        "Global unsubscribe: every channel refused from the moment this answers",
        {"type": "object", "required": ["identifier"], "properties": {"identifier": IDENTIFIER}},
        {
            "type": "object",
            "properties": {
                "profile_id": {"type": "integer"},
                "globally_unsubscribed": {"type": "boolean"},
                "states": {"type": "object"},
            },
        },
    ),
    "/gate/check": _post(
        "Ask the gate (read-only); `at` evaluates another moment",
        {
            "type": "object",
            "required": ["profile_id", "channel"],
            "properties": {"profile_id": {"type": "integer"}, "channel": CHANNEL, "at": TIME},
        },
        DECISION,
    ),
    "/messages": _post(
        "Gate and send one message; the check and the reservation against the caps are atomic",
        {
            "type": "object",
            "required": ["profile_id", "channel", "source"],
            "properties": {
                "profile_id": {"type": "integer"},
                "channel": CHANNEL,
                "source": {"type": "string", "enum": ["campaign", "journey", "time_sensitive", "manual"]},
                "campaign_id": {"type": "string"},
                "journey_id": {"type": "string"},
                "deadline": {
                    **TIME,
                    "description": "time_sensitive only: the last useful moment (default now + 24 h)",
                },
                "content": {
                    "type": "object",
                    "description": "subject, text or template handed to the provider",
                },
            },
        },
        {
            "type": "object",
            "properties": {
                "id": {"type": "integer"},
                "status": {"type": "string", "enum": ["sent", "blocked", "waiting", "missed"]},
                "reason": DECISION["properties"]["reason"],
                "retry_at": DECISION["properties"]["retry_at"],
            },
        },
    ),
}
