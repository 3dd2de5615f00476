"""Views: show and save the shop's settings."""

from flask import flash, g, redirect, render_template, request, url_for
from flask_login import current_user

from app.blueprints.settings import bp
from app.blueprints.settings.forms import patch_from_form, worded
from app.errors import DomainError
from app.extensions import db
from app.plans import has_capability
from app.services.audit import record
from app.services.enrichment import restage_after_settings
from app.services.shop_settings import effective_settings, update_settings
from app.web import shop_required


def _render(settings, error=None, status=200):
    return render_template(
        "settings/index.html",
        s=settings,
        error=error,
        can_lifecycle=has_capability(g.shop.plan, "custom_lifecycle_thresholds"),
        can_regions=has_capability(g.shop.plan, "regional_quiet_hours"),
    ), status


@bp.get("/")
@shop_required("staff")
def index():
    """Show the settings form."""
    return _render(effective_settings(g.shop))


@bp.post("/")
@shop_required("owner")
def save():
    """Validate and save; a bad value re-renders the form with the reason."""
    try:
        patch = patch_from_form(
            request.form,
            lifecycle=has_capability(g.shop.plan, "custom_lifecycle_thresholds"),
            regions=has_capability(g.shop.plan, "regional_quiet_hours"),
        )
        before = effective_settings(g.shop)
        regions = patch.get("quiet_hours", {}).get("regions")
        if regions is not None:  # the form lists every region: one left out of it is removed
            regions.update({code: None for code in before["quiet_hours"]["regions"] if code not in regions})
        after = update_settings(g.shop, patch)
    except DomainError as exc:
        db.session.rollback()
        return _render(effective_settings(g.shop), error=worded(exc.message), status=422)
    record(g.shop.id, f"user:{current_user.id}", "update_settings", details={"keys": sorted(patch)})
    db.session.commit()
    if restage_after_settings(g.shop, before, after) is not None:
        flash("Settings saved. Every customer's stage is being recomputed with the new windows.", "ok")
    else:
        flash("Settings saved.", "ok")
    return redirect(url_for("settings.index"))
