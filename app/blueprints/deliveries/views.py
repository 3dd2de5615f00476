"""Views: list the shop's failed and dead deliveries a page at a time; retry one or all (HTMX,
CSRF-protected). A retry answers the page it was clicked on."""

from flask import abort, flash, g, redirect, request, url_for

from app.blueprints.deliveries import bp
from app.htmx import is_partial_request, render_page
from app.models import WebhookDelivery
from app.services.ingest.inbox import failed_page, ingest_status
from app.tenancy import get_scoped
from app.web import shop_required
from workers.dlq import retry_all as retry_failed
from workers.dlq import retry_one


def _cursor() -> dict[str, int]:
    """The page asked for: ``before`` (older than) or ``after`` (newer than) a delivery id."""
    return {k: v for k in ("before", "after") if (v := request.values.get(k, type=int)) is not None}


def _list(message: str | None = None):
    cursor = _cursor()
    page = failed_page(g.shop.id, **cursor)
    return render_page(
        "deliveries/index.html",
        "deliveries",
        page=page,
        cursor=cursor,
        status=ingest_status(g.shop.id),
        message=message,
    )


@bp.get("/")
@shop_required()
def index():
    """Failed and dead deliveries of the current shop, newest first, a page at a time (support
    agents read them; staff retry)."""
    return _list()


@bp.post("/<int:delivery_id>/retry")
@shop_required("staff")
def retry(delivery_id: int):
    """Retry one delivery of this shop; answers the refreshed page, saying what came of it."""
    row = get_scoped(WebhookDelivery, g.shop.id, delivery_id)
    if row is None:
        abort(404)
    return _answer(retry_one(row.id).one(delivery_id))


@bp.post("/retry-all")
@shop_required("staff")
def retry_all():
    """Retry every failed or dead delivery of this shop (a batch in the request, the rest later)."""
    return _answer(retry_failed(g.shop.id).all())


def _answer(message: str):
    if not is_partial_request():
        flash(message, "ok")
        return redirect(url_for("deliveries.index", **_cursor()), 303)
    return _list(message)
