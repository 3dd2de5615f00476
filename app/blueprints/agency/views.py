"""Views: the agency roll-up."""

from flask import abort, g

from app.blueprints.agency import bp
from app.htmx import render_page
from app.services.agency import can_view_rollup, rollup
from app.web import shop_required


@bp.get("/")
@shop_required()
def index():
    """Every managed shop's coverage, lifecycle mix and fatigue posture."""
    if not can_view_rollup(g.memberships):
        abort(403)
    return render_page("agency/index.html", "rollup", rows=rollup(g.memberships))
