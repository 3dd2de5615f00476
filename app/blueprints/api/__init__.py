"""Admin API v1: JSON over ``Authorization: Bearer <token>``, one shop per token.

Bearer tokens are not sent by browsers on their own, so the API is exempt
from CSRF; it never reads the console session.
"""

from flask import Blueprint, g, jsonify, request
from sqlalchemy.exc import InterfaceError, OperationalError

from app.blueprints import unrouted
from app.errors import DomainError
from app.extensions import csrf, db
from app.services.accounts import shop_for_token

bp = Blueprint("api", __name__, url_prefix="/api/v1")
PUBLIC_ENDPOINTS = {"api.openapi"}


def api_error(status: int, code: str, message: str):
    """The contract's error body: ``{"error": {"code", "message"}}``."""
    return jsonify({"error": {"code": code, "message": message}}), status


@bp.before_request
def authenticate_token():
    """Resolve the bearer token to ``g.api_shop`` or answer 401."""
    if request.endpoint in PUBLIC_ENDPOINTS:
        return None
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    shop = shop_for_token(token.strip()) if scheme.lower() == "bearer" and token.strip() else None
    if shop is None:
        body, status = api_error(401, "unauthorized", "a valid Bearer token is required")
        error = "invalid_token" if token.strip() else None  # RFC 6750: no error code when none was sent
        challenge = 'Bearer realm="c360"' + (f', error="{error}"' if error else "")
        return body, status, {"WWW-Authenticate": challenge}
    g.api_shop = shop
    db.session.commit()  # records last_used_at
    return None


@bp.errorhandler(DomainError)
def domain_error(exc: DomainError):
    """Turn a service's domain error into the contract's error body."""
    db.session.rollback()
    return api_error(exc.status, exc.code, exc.message)


@bp.errorhandler(OperationalError)
@bp.errorhandler(InterfaceError)
def database_away(_exc):
    """A JSON 503 with ``Retry-After`` when the database cannot be reached."""
    from app.blueprints.webhooks.helpers import unavailable

    return unavailable()


@bp.errorhandler(404)
def not_found(_exc):
    return api_error(404, "not_found", "no such resource")


@bp.errorhandler(405)
def method_not_allowed(_exc):
    return api_error(405, "method_not_allowed", "method not allowed on this resource")


@bp.errorhandler(400)
def bad_request(exc):
    return api_error(400, "bad_request", getattr(exc, "description", "bad request"))


@bp.errorhandler(413)
def too_large(_exc):
    return api_error(413, "too_large", "request body over 1 MiB")


def json_body() -> dict:
    """The request's JSON object, or a 400 saying why it is not one."""
    from app.request_body import whole_body
    from app.services.ingest.common import BadPayload, load_json

    try:
        data = load_json(whole_body())
    except BadPayload as exc:
        raise DomainError(str(exc), code="bad_json") from None
    if not isinstance(data, dict):
        raise DomainError("the body must be a JSON object", code="bad_json")
    return data


def init_app(app):
    """Register the API blueprint, exempt from CSRF."""
    import pkgutil
    from importlib import import_module

    # Every module of this package holds routes; importing it registers them.
    for module in pkgutil.iter_modules(__path__):
        import_module(f"{__name__}.{module.name}")

    csrf.exempt(bp)
    app.register_blueprint(bp)
    # A path no route matches never reaches the blueprint's own handlers: JSON under /api/v1 too
    # (a client parses every error the same way).
    prefix = bp.url_prefix
    unrouted.claim(
        app,
        lambda path: path == prefix or path.startswith(f"{prefix}/"),
        {404: not_found, 405: method_not_allowed},
    )
