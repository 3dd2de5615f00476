"""Views: the filterable message log, and a customer's global unsubscribe."""

from flask import abort, flash, g, redirect, request, url_for
from flask_login import current_user

from app.blueprints.messages import bp
from app.blueprints.messages.forms import FILTERS, filter_choices, refused_filter
from app.errors import NotFound
from app.extensions import db
from app.forms import EmptyForm
from app.htmx import HTMX_STOP_POLLING, is_partial_request, render_page
from app.models import Profile
from app.models.base import utcnow
from app.services import campaign_sends, consent
from app.services.audit import record
from app.services.messaging import customer_names, message_log
from app.tenancy import get_scoped
from app.web import shop_required

PAGE_SIZE = 100


@bp.get("/")
@shop_required()
def index():
    """The message log; the filter bar refreshes only the ``log`` block."""
    filters = {key: request.args.get(key) or None for key in FILTERS}
    choices = filter_choices(g.shop.id)
    error = refused_filter(filters, choices)
    messages = [] if error else list(db.session.scalars(message_log(g.shop.id, **filters).limit(PAGE_SIZE)))
    body = render_page(
        "messages/index.html",
        "log",
        messages=messages,
        names=customer_names(g.shop.id, {m.profile_id for m in messages}),
        filters=filters,
        choices=choices,
        sends=campaign_sends.recent(g.shop),
        error=error,
    )
    return (body, 400) if error else body


@bp.get("/sends")
@shop_required()
def sends():
    """The campaign sends partial; polling stops (286) once every send has finished."""
    if not is_partial_request():
        return redirect(url_for("messages.index"))
    recent = campaign_sends.recent(g.shop)
    body = render_page("messages/index.html", "sends", sends=recent)
    return body if any(not s.finished for s in recent) else (body, HTMX_STOP_POLLING)


@bp.post("/unsubscribe/<int:profile_id>")
@shop_required("support")
def unsubscribe(profile_id: int):
    """Globally unsubscribe one customer from the console (every channel off).

    Support agents may too: "stop contacting me" reaches them first, and honouring it only
    ever messages someone less.
    """
    if not EmptyForm().validate_on_submit():
        abort(400)
    profile = get_scoped(Profile, g.shop.id, profile_id)
    if profile is None:
        abort(404)
    consent.unsubscribe_all(profile, source="console", captured_at=utcnow())
    record(g.shop.id, f"user:{current_user.id}", "global_unsubscribe", "profile", profile.id)
    db.session.commit()
    flash("Customer unsubscribed from every channel.", "ok")
    return redirect(url_for("customers.show", profile_id=profile.id))


@bp.post("/sends/<int:send_id>/retry")
@shop_required("staff")
def retry_send(send_id: int):
    """Give a campaign send's failed chunks fresh attempts (once the cause is fixed)."""
    if not EmptyForm().validate_on_submit():
        abort(400)
    try:
        queued = campaign_sends.retry_failed(g.shop, send_id)
    except NotFound:
        abort(404)
    record(
        g.shop.id,
        f"user:{current_user.id}",
        "campaign_chunks_retried",
        "campaign_send",
        send_id,
        {"chunks": queued},
    )
    db.session.commit()
    flash(
        f"{queued} failed chunk(s) of send #{send_id} queued again." if queued else "Nothing to retry.", "ok"
    )
    return redirect(url_for("messages.index"))
