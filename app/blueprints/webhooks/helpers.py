"""What every webhook view shares: the raw body, error answers, and accept-then-enqueue."""

from __future__ import annotations

from typing import Any

from flask import abort, jsonify
from sqlalchemy.exc import InterfaceError, OperationalError

from app.errors import DomainError
from app.extensions import db
from app.logging import get_logger
from app.models import Shop
from app.request_body import whole_body
from app.services.accounts import shop_by_domain
from app.services.ingest.common import CheckedBatch, load_json
from app.services.ingest.inbox import Stored

log = get_logger("webhooks")


def error(status: int, code: str, message: str):
    """The contract's error body: ``{"error": {"code", "message"}}``."""
    return jsonify({"error": {"code": code, "message": message}}), status


def raw_body() -> bytes:
    """The exact bytes the provider signed; 413 past ``MAX_CONTENT_LENGTH`` (1 MiB), chunked or not."""
    return whole_body()


def shop_or_404(domain: str | None) -> Shop:
    """The shop a webhook names, or a 404."""
    shop = shop_by_domain(domain) if domain and domain.strip() else None
    if shop is None:
        abort(404, description="unknown shop")
    return shop


def parse_json(body: bytes) -> Any:
    """The body as JSON, or ``BadPayload`` saying it is not."""
    return load_json(body)


def accept(stored: list[Stored], checked: CheckedBatch | None = None, **extra):
    """Commit the stored deliveries, then queue the new ones; answer 200 either way.

    ``duplicates`` counts every delivery seen before, dead-lettered ones included. When the
    ``checked`` batch refused some of its events (stored dead, as ``stored``'s ``dead`` rows),
    the answer adds how many went to the dead-letter queue now and every refusal's reason: the
    batch was the provider's format, so a non-2xx would only have it sent again to no end.
    """
    from workers.ingest import enqueue_deliveries

    db.session.commit()
    try:
        enqueue_deliveries([item.shop_id for item in stored if item.needs_work])
    except Exception:
        # Committed is accepted: the sweeper queues rows no job took. A 500 here (Redis away)
        # made providers resend what we held, and an API client without an id send it twice.
        log.warning("deliveries stored but not queued; the sweeper will queue them", exc_info=True)
    created = sum(1 for s in stored if s.created and not s.dead)
    dead = [s for s in stored if s.created and s.dead]
    counts = {"accepted": created, "duplicates": len(stored) - created - len(dead), **extra}
    if checked is not None and checked.refused:
        counts.update(dead_lettered=len(dead), refused=checked.refused)
        if dead:  # counts and the shop only: a refused event may hold an address
            log.warning("shop %s: %s refused events dead-lettered", dead[0].shop_id, len(dead))
    return jsonify(counts), 200


RETRY_AFTER_SECONDS = 30


def unavailable():
    """503 with ``Retry-After`` when the database cannot be reached (nothing was stored): a JSON
    answer the provider or client can act on, where Flask's HTML 500 page said nothing."""
    log.error("database unreachable: the request was refused with a 503")
    try:
        db.session.rollback()
    except Exception:  # the connection is gone: nothing to roll back
        db.session.remove()
    body, status = error(503, "unavailable", "the database cannot be reached; nothing was stored, send again")
    return body, status, {"Retry-After": str(RETRY_AFTER_SECONDS)}


def register_errors(bp) -> None:
    """JSON answers for the blueprint's errors (never an HTML page to a provider)."""

    @bp.errorhandler(DomainError)
    def domain_error(exc: DomainError):
        db.session.rollback()
        return error(exc.status, exc.code, exc.message)

    @bp.errorhandler(OperationalError)
    @bp.errorhandler(InterfaceError)
    def database_away(_exc):
        return unavailable()

    bp.register_error_handler(404, not_found)

    @bp.errorhandler(400)
    def bad_request(exc):
        return error(400, "bad_request", getattr(exc, "description", None) or "bad request")

    @bp.errorhandler(413)
    def too_large(_exc):
        return error(413, "too_large", "request body over 1 MiB")

    bp.register_error_handler(405, method_not_allowed)


def not_found(exc):
    """An unknown shop or path, as JSON."""
    return error(404, "not_found", getattr(exc, "description", None) or "not found")


def method_not_allowed(_exc):
    """A method the endpoint does not take, as JSON."""
    return error(405, "method_not_allowed", "method not allowed")


def is_webhook_path(path: str) -> bool:
    """Whether ``path`` is a provider's: the blueprint's errors answer there, routed or not."""
    return any(path == root or path.startswith(f"{root}/") for root in ("/webhooks", "/collect"))
