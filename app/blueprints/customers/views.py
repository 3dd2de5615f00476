"""Views: the customers list (live search) and one customer's page."""

from flask import abort, g, redirect, request, url_for

from app.blueprints.customers import bp
from app.htmx import render_page
from app.models import Profile
from app.services.profile_search import identifiers_by_profile, search_profiles
from app.services.profile_view import profile_detail
from app.tenancy import get_scoped
from app.web import shop_required


@bp.get("/")
@shop_required()
def index():
    """List customers; the search box refreshes only the results block."""
    q = request.args.get("q", "")
    page = search_profiles(
        g.shop.id,
        q,
        cursor=request.args.get("cursor"),
        sort=request.args.get("sort", "recent"),
        region=g.shop.country,
    )
    idents = identifiers_by_profile(g.shop.id, [p.id for p in page.items])
    return render_page("customers/index.html", "results", q=q, page=page, idents=idents)


@bp.get("/<int:profile_id>")
@shop_required()
def show(profile_id: int):
    """One customer's 360 page; a merged-away id redirects to the survivor."""
    profile = get_scoped(Profile, g.shop.id, profile_id)
    if profile is None:
        abort(404)
    if profile.merged_into_id:
        return redirect(url_for("customers.show", profile_id=profile.merged_into_id), 301)
    return render_page("customers/show.html", "profile", p=profile_detail(g.shop, profile))
