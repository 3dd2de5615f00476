"""API: ``GET /openapi.json`` — the OpenAPI 3.1 description of the routes that exist.

Operations are described here once; the document lists only those whose
route is registered, and a test fails when a route has no description.
"""

from flask import current_app, jsonify

from app.blueprints.api import bp
from app.blueprints.api.events_openapi import OPENAPI_PATHS as EVENTS_PATHS
from app.blueprints.api.messaging_openapi import OPENAPI_PATHS as MESSAGING_PATHS

ERROR = {"$ref": "#/components/schemas/Error"}
JSON_OBJECT = {"type": "object"}


def _op(
    summary: str,
    status: int = 200,
    body: bool = False,
    params: tuple = (),
    also: dict[str, str | tuple[str, dict]] | None = None,
) -> dict:
    """One operation: its success status, the errors every call may answer, and ``also`` (status →
    what it means) for the answers particular to it."""
    op: dict = {
        "summary": summary,
        "responses": {
            str(status): {"description": "OK", "content": {"application/json": {"schema": JSON_OBJECT}}},
            "401": {
                "description": "missing or bad token",
                "content": {"application/json": {"schema": ERROR}},
            },
            "404": {
                "description": "not found in this shop",
                "content": {"application/json": {"schema": ERROR}},
            },
            "422": {"description": "invalid value", "content": {"application/json": {"schema": ERROR}}},
        },
    }
    for code, meaning in (also or {}).items():
        # An error by default; a (description, schema) pair for an answer of another shape.
        text, schema = meaning if isinstance(meaning, tuple) else (meaning, ERROR)
        op["responses"][code] = {"description": text, "content": {"application/json": {"schema": schema}}}
    if body:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": JSON_OBJECT}}}
    if params:
        op["parameters"] = [
            {"name": n, "in": where, "required": where == "path", "schema": {"type": t}}
            for n, where, t in params
        ]
    return op


def _enrichment_run_op() -> dict:
    """``POST /enrichment/run``: no body recomputes now; ``as_of`` recomputes as of a past date."""
    op = _op(
        "Recompute lifecycle, RFM, churn and predictions now, or as of a past date",
        202,
        also={"400": "the body is not a JSON object"},
    )
    as_of = {"type": "string", "description": "a date (the end of that day in the shop's zone) or a time"}
    schema = {"type": "object", "additionalProperties": False, "properties": {"as_of": as_of}}
    op["requestBody"] = {"required": False, "content": {"application/json": {"schema": schema}}}
    return op


def _manual_merge_op() -> dict:
    """``POST /profiles/{id}/merge`` with ``{other_id}``: the survivor is chosen by the rules."""
    op = _op(
        "Merge another profile with this one; the survivor is the one holding the most trusted "
        "identifier (then the older)",
        201,
        True,
        (PID,),
        also={**MERGE_REFUSED, "400": "the body is not a JSON object"},
    )
    schema = {
        "type": "object",
        "required": ["other_id"],
        "properties": {"other_id": {"type": "integer", "description": "the profile to merge with this one"}},
    }
    op["requestBody"]["content"]["application/json"]["schema"] = schema
    return op


def _public_op(summary: str) -> dict:
    """An operation that needs no token: no ``security``, no 401."""
    op = _op(summary)
    op["security"] = []
    del op["responses"]["401"], op["responses"]["404"], op["responses"]["422"]
    return op


def _profiles_search_op() -> dict:
    """``GET /profiles``: its cursor is opaque and keyset, and a cursor it did not hand out is a 400."""
    op = _op(
        "Find a profile by identifier (KIND:VALUE), or search by text: newest first, 25 a page",
        params=(("identifier", "query", "string"), ("q", "query", "string"), ("cursor", "query", "string")),
    )
    op["parameters"][2]["description"] = (
        "The next_cursor of the previous page, passed back unchanged; leave it out (or empty) for the "
        "first page. Opaque: it marks where that page ended, not a count of rows, so profiles created "
        "or merged between two fetches neither repeat nor skip a row that existed at the first."
    )
    op["responses"]["200"]["content"]["application/json"]["schema"] = {
        "type": "object",
        "description": "With identifier: the profile. With q: a page of profiles.",
        "properties": {
            "profiles": {"type": "array", "items": JSON_OBJECT},
            "next_cursor": {"type": ["string", "null"], "description": "null on the last page"},
        },
    }
    op["responses"]["400"] = {
        "description": "bad_cursor: the cursor is not a next_cursor this API returned (e.g. 25, -5, abc); "
        "bad_identifier: identifier is not KIND:VALUE with a known kind",
        "content": {"application/json": {"schema": ERROR}},
    }
    return op


PID = ("id", "path", "integer")
BAD_CURSOR = {"400": "bad_cursor: the cursor is not a next_cursor this API returned"}
MERGE_REFUSED = {
    "409": "conflict: already decided, one of the profiles merged away or erased since, or the same person"
}
UNDO_REFUSED = {
    "409": "undo_window_closed: past the plan's window; undo_later_merge_first: a later merge took "
    "this survivor or loser, undo it first; conflict: already undone"
}


def _candidates_op() -> dict:
    """GET /merge-candidates, with the statuses a candidate may have (``api.identity.STATUSES``)."""
    from app.blueprints.api.identity import STATUSES

    op = _op(
        "Merge candidates (open by default), newest first, 100 a page (next_cursor); superseded: closed "
        "because a late signal showed time order would not have raised them",
        200,
        False,
        (("status", "query", "string"), ("cursor", "query", "string")),
        also=BAD_CURSOR,
    )
    op["parameters"][0]["schema"] = {"type": "string", "enum": list(STATUSES), "default": "open"}
    return op


DETAILED: dict[str, dict] = {**MESSAGING_PATHS, **EVENTS_PATHS}
OPERATIONS: dict[tuple[str, str], dict] = {
    ("/events", "post"): _op("Record a generic signal (support touch, push, marketplace order…)", 202, True),
    ("/profiles", "get"): _profiles_search_op(),
    ("/profiles/{id}", "get"): _op(
        "One profile; a merged-away id answers 301 with merged_into",
        params=(PID,),
        also={
            "301": (
                "merged away: the id asked and the surviving profile's, which Location names",
                {
                    "type": "object",
                    "required": ["id", "merged_into"],
                    "properties": {"id": {"type": "integer"}, "merged_into": {"type": "integer"}},
                },
            )
        },
    ),
    ("/consents", "post"): _op("Record a consent event (append-only)", 201, True),
    ("/unsubscribe", "post"): _op("Global unsubscribe: every channel off at once", 200, True),
    ("/gate/check", "post"): _op("Ask the send-time gate (read-only)", 200, True),
    ("/messages", "post"): _op("Send through the gate; check and reservation are atomic", 201, True),
    ("/merge-candidates", "get"): _candidates_op(),
    ("/merge-candidates/{id}/accept", "post"): _op(
        "Merge the candidate pair", params=(PID,), also=MERGE_REFUSED
    ),
    ("/merge-candidates/{id}/reject", "post"): _op(
        "Mark the pair as different people", params=(PID,), also=MERGE_REFUSED
    ),
    ("/profiles/{id}/merge", "post"): _manual_merge_op(),
    ("/merges", "get"): _op(
        "Merges, newest first, with their undo deadline; 100 a page (next_cursor), or one profile's",
        200,
        False,
        (("cursor", "query", "string"), ("profile_id", "query", "integer")),
        also=BAD_CURSOR,
    ),
    ("/merges/{id}/undo", "post"): _op(
        "Undo a merge within the plan's window", params=(PID,), also=UNDO_REFUSED
    ),
    ("/profiles/{id}/erasure-preview", "get"): _op("What erasure would delete or anonymise", params=(PID,)),
    ("/profiles/{id}/erase", "post"): _op("Erase a profile (one transaction)", params=(PID,)),
    ("/profiles/{id}/export", "get"): _op("Everything held about a profile", params=(PID,)),
    ("/gdpr/inventory", "get"): _op("Shop-wide data inventory"),
    ("/settings", "get"): _op("The shop's effective settings"),
    ("/settings", "put"): _op(
        "Merge the given settings keys; 422 with the reason for a bad value",
        200,
        True,
        also={
            "400": "the body is not a JSON object",
            "403": "plan_required: the setting needs a higher plan (custom lifecycle windows: Pro; "
            "regional quiet hours: Starter)",
        },
    ),
    ("/segments", "post"): _op("Create a segment", 201, True),
    ("/segments/{id}/members", "get"): _op("Members of a segment", params=(PID,)),
    ("/profiles.csv", "get"): _op(
        "Profiles as CSV, optionally one segment's", params=(("segment_id", "query", "integer"),)
    ),
    ("/enrichment/run", "post"): _enrichment_run_op(),
    ("/jobs/{id}", "get"): _op("A job's status and progress", params=(("id", "path", "string"),)),
    ("/stats", "get"): _op("Shop totals for dashboards"),
    ("/ingest/status", "get"): _op("Counts of received, pending, processed and dead-letter deliveries"),
    ("/openapi.json", "get"): _public_op("This document (no token needed)"),
}


def api_routes() -> set[tuple[str, str]]:
    """``(path, method)`` of every registered API route, in OpenAPI path syntax."""
    routes = set()
    for rule in current_app.url_map.iter_rules():
        if not rule.endpoint.startswith("api."):
            continue
        path = rule.rule.removeprefix(bp.url_prefix)
        for arg in rule.arguments:
            for conv in ("int:", "string:", ""):
                path = path.replace(f"<{conv}{arg}>", "{id}" if arg.endswith("id") else "{" + arg + "}")
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            routes.add((path, method.lower()))
    return routes


def document() -> dict:
    """The OpenAPI document for the routes this app registers."""
    paths: dict[str, dict] = {}
    for path, method in sorted(api_routes()):
        if (path, method) in OPERATIONS:
            paths.setdefault(path, {})[method] = OPERATIONS[(path, method)]
    # Features with detailed schemas describe their own operations.
    for path, item in DETAILED.items():
        for method, operation in item.items():
            if method in paths.get(path, {}):
                paths[path][method] = operation
    return {
        "openapi": "3.1.0",
        "info": {"title": "Customer 360 admin API", "version": "1"},
        "servers": [{"url": bp.url_prefix}],
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {
                    "type": "object",
                    "properties": {
                        "error": {
                            "type": "object",
                            "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
                        }
                    },
                }
            },
        },
    }


@bp.get("/openapi.json")
def openapi():
    """Serve the OpenAPI document (no token needed)."""
    return jsonify(document())
