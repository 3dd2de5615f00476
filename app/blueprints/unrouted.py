"""Answers for requests no route takes: an unknown path, or a method a path does not accept.

Flask raises these before it knows a blueprint, so a blueprint's own error handlers never see
them and the app's HTML page answered: a provider or an API client posting to a webhook got a
page to parse. Each machine-facing blueprint claims its paths here with the handlers that word
its errors; any other path keeps Flask's page (the console's).
"""

from __future__ import annotations

from collections.abc import Callable

from flask import Flask, current_app, request

Handler = Callable[[Exception], object]
CODES = (404, 405)


def claim(app: Flask, owns: Callable[[str], bool], handlers: dict[int, Handler]) -> None:
    """Answer the unrouted requests whose path ``owns`` accepts with ``handlers`` (by status code)."""
    claims = app.extensions.setdefault("unrouted", [])
    if not claims:
        for code in CODES:
            app.register_error_handler(code, _dispatcher(code))
    claims.append((owns, handlers))


def _dispatcher(code: int) -> Handler:
    def handle(exc: Exception):
        for owns, handlers in current_app.extensions["unrouted"]:
            if code in handlers and owns(request.path):
                return handlers[code](exc)
        return exc

    return handle
