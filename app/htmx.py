"""The one rule that decides between a full page and an HTMX fragment.

A fragment is returned only when ``HX-Request`` is set and the request is
neither boosted nor a history restore (htmx PR #2013: after a history
cache miss the browser needs the whole page). Every response varies on
``HX-Request`` so caches keep the two apart.
"""

from __future__ import annotations

from flask import Flask, render_template, request
from htmx_flask import Htmx
from jinja2_fragments.flask import render_block

HTMX_STOP_POLLING = 286


def is_partial_request() -> bool:
    """True when this request wants a fragment rather than the whole page."""
    hx = request.htmx
    return bool(hx) and not hx.boosted and not hx.history_restore_request


def render_page(template: str, block: str, **context) -> str:
    """Render ``template`` whole, or only ``block`` for a partial request."""
    if is_partial_request():
        return render_block(template, block, **context)
    return render_template(template, **context)


def _vary_on_hx_request(response):
    response.vary.add("HX-Request")
    return response


def init_app(app: Flask) -> None:
    """Give requests ``request.htmx`` and add ``Vary: HX-Request`` to every response."""
    Htmx(app)
    app.after_request(_vary_on_hx_request)
