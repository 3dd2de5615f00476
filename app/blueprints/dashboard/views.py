"""Views: the shop dashboard."""

from flask import g, redirect, url_for
from flask_login import current_user

from app.blueprints.dashboard import bp
from app.htmx import render_page
from app.services.stats import shop_stats
from app.web import shop_required


@bp.get("/")
def root():
    """Send visitors to the dashboard, or to the login page."""
    if current_user.is_authenticated:
        return redirect(url_for("dashboard.index"))
    return redirect(url_for("auth.login"))


@bp.get("/dashboard")
@shop_required()
def index():
    """Show the shop's totals and lifecycle mix."""
    return render_page("dashboard/index.html", "stats", stats=shop_stats(g.shop.id))
