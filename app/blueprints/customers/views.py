"""Views: the customers list (search, filters, sorts) and one customer's 360 page with its lazy sections."""

from flask import abort, flash, g, redirect, request, url_for
from flask_login import current_user

from app.blueprints.customers import bp
from app.digits import whole_number
from app.errors import ValidationFailed
from app.extensions import db
from app.htmx import is_partial_request, render_page
from app.models import Profile
from app.services import customer_activity as activity
from app.services import customer_page as page
from app.services.audit import record
from app.services.identifiers import live_profile
from app.services.profile_filters import ListQuery, parse_filters
from app.services.profile_search import identifiers_by_profile, search_profiles_by_offset
from app.services.profile_timezone import set_profile_timezone
from app.tenancy import get_scoped
from app.web import shop_required

SECTIONS = ("identities", "orders", "timeline", "consents", "messages", "predictions")


@bp.get("/")
@shop_required()
def index():
    """List customers; the search box and filters refresh only the results block."""
    try:
        query = parse_filters(g.shop.id, request.args)
    except ValidationFailed as exc:
        ctx = {"query": ListQuery(), "page": None, "idents": {}, "error": exc.message}
        return render_page("customers/index.html", "results", **ctx), 422
    found = search_profiles_by_offset(
        g.shop.id,
        query.q,
        cursor=request.args.get("cursor"),
        sort=query.sort,
        filters=query.criteria,
        region=g.shop.country,
    )
    idents = identifiers_by_profile(g.shop.id, [p.id for p in found.items])
    return render_page("customers/index.html", "results", query=query, page=found, idents=idents, error=None)


def _profile_or_404(profile_id: int) -> Profile:
    profile = get_scoped(Profile, g.shop.id, profile_id)
    if profile is None:
        abort(404)
    return profile


def _section(name: str, profile: Profile, doc: dict):
    """Build one section's data (the views below stay one line each)."""
    number = whole_number(request.args.get("page", "0")) or 0
    if name == "identities":
        return page.identities_section(g.shop.id, profile)
    if name == "orders":
        return page.orders_section(g.shop.id, profile, number)
    if name == "timeline":
        return activity.timeline_section(g.shop.id, profile, number)
    if name == "consents":
        return activity.consents_section(g.shop.id, profile)
    if name == "messages":
        return activity.messages_section(g.shop.id, profile, doc["page"]["zone"])
    return page.predictions_section(g.shop, profile)


@bp.get("/<int:profile_id>")
@shop_required()
def show(profile_id: int):
    """One customer's 360 page: the header now, each section lazily over HTMX."""
    profile = _profile_or_404(profile_id)
    if profile.merged_into_id:
        # Temporary (302): browsers keep a 301 for good, and an undo makes this page its own again.
        return redirect(url_for("customers.show", profile_id=live_profile(profile).id), 302)
    return render_page("customers/show.html", "header", p=page.header(g.shop, profile), sections={})


@bp.get("/<int:profile_id>/<any(identities, orders, timeline, consents, messages, predictions):name>")
@shop_required()
def section(profile_id: int, name: str):
    """One section as an HTMX fragment, or the whole page with that section filled in."""
    profile = _profile_or_404(profile_id)
    if profile.merged_into_id:
        survivor = live_profile(profile).id
        if is_partial_request():  # the page around the section names the merged-away profile
            return "", 200, {"HX-Redirect": url_for("customers.show", profile_id=survivor)}
        return redirect(url_for("customers.section", profile_id=survivor, name=name), 302)
    doc = page.section_context(g.shop, profile) if is_partial_request() else page.header(g.shop, profile)
    return render_page("customers/show.html", name, p=doc, sections={name: _section(name, profile, doc)})


@bp.post("/<int:profile_id>/timezone")
@shop_required("staff")
def set_timezone(profile_id: int):
    """Set the customer's time zone by hand; quiet hours and daily caps follow it."""
    profile = _profile_or_404(profile_id)
    try:
        profile = set_profile_timezone(profile, request.form.get("timezone"))
    except ValidationFailed as exc:
        db.session.rollback()
        flash(exc.message, "error")
        typed = (request.form.get("timezone") or "")[:100]  # shown again in the open form
        return redirect(url_for("customers.show", profile_id=profile.id, timezone=typed)), 303
    record(
        g.shop.id,
        f"user:{current_user.id}",
        "set_timezone",
        "profile",
        profile.id,
        {"timezone": profile.timezone},
    )
    db.session.commit()
    flash("Time zone saved.", "ok")
    return redirect(url_for("customers.show", profile_id=profile.id)), 303
