"""Inbound webhooks and the storefront pixel: signed by the provider, not by a session.

The one blueprint exempt from CSRF: each request authenticates by the
provider's signature on the raw body instead (``/collect`` is public and
only ever adds events).
"""

from flask import Blueprint

bp = Blueprint("webhooks", __name__)

from app.blueprints.webhooks import collect, views  # noqa: E402,F401


def init_app(app) -> None:
    """Register the blueprint, exempt from CSRF."""
    from app.blueprints import unrouted
    from app.blueprints.webhooks.helpers import is_webhook_path, method_not_allowed, not_found
    from app.extensions import csrf

    csrf.exempt(bp)
    app.register_blueprint(bp)
    unrouted.claim(app, is_webhook_path, {404: not_found, 405: method_not_allowed})
