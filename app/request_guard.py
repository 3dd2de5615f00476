"""Refuse a request that carries a NUL character where the database would be asked about it.

PostgreSQL text cannot hold NUL (0x00), and psycopg refuses to send it, so a NUL in a
path segment (``/webhooks/sendgrid/<shop>``), a query argument (a search, an identifier
lookup) or a console form field would reach the database as a 500. No shop, identifier,
name or setting holds one, so the request is answered 400 before any view runs. JSON
bodies are read by ``ingest.common.load_json``, which refuses NUL with its own reason;
webhook and API form bodies are left to their views (parsing a body here would take it
from the signature check that needs it raw).
"""

from __future__ import annotations

from flask import Flask, request
from werkzeug.exceptions import BadRequest

RAW_BODY_BLUEPRINTS = frozenset({"webhooks", "api"})


def refuse_nul() -> None:
    """The ``before_request`` check (raises ``BadRequest``)."""
    where = None
    if "\x00" in request.path:
        where = "the path"
    elif any("\x00" in key or "\x00" in value for key, value in request.args.items(multi=True)):
        where = "the query string"
    elif request.blueprint not in RAW_BODY_BLUEPRINTS and request.mimetype in (
        "application/x-www-form-urlencoded",
        "multipart/form-data",
    ):
        if any("\x00" in key or "\x00" in value for key, value in request.form.items(multi=True)):
            where = "a form field"
    if where is not None:
        raise BadRequest(f"{where} holds a NUL character, which no value here can contain")


def init_app(app: Flask) -> None:
    app.before_request(refuse_nul)
