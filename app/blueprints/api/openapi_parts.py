"""What the hand-written OpenAPI path items share: a timestamp's schema and a JSON POST operation."""

from __future__ import annotations

TIME = {"type": "string", "format": "date-time", "description": "ISO 8601 with a UTC offset"}


def json_post(
    summary: str, body: dict, answer: dict, errors: dict, *, status: str = "200", description: str = "OK"
) -> dict:
    """A path item with one POST: its JSON body, its JSON answer, and the errors it answers."""
    return {
        "post": {
            "summary": summary,
            "requestBody": {"required": True, "content": {"application/json": {"schema": body}}},
            "responses": {
                status: {"description": description, "content": {"application/json": {"schema": answer}}},
                **errors,
            },
        }
    }
