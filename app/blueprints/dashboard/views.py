"""Views: the shop dashboard and its enrichment button with live progress."""

from flask import abort, flash, g, redirect, url_for
from flask_login import current_user

from app.blueprints.dashboard import bp
from app.extensions import db
from app.htmx import HTMX_STOP_POLLING, is_partial_request, render_page
from app.models import JobRun
from app.services.audit import record
from app.services.dashboard import dashboard
from app.services.enrichment import start_enrichment
from app.tenancy import get_scoped
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
    """Show the shop's lifecycle mix, R×F grid, churn bands, fatigue posture and onboarding state."""
    return render_page("dashboard/index.html", "stats", d=dashboard(g.shop))


@bp.post("/dashboard/enrich")
@shop_required("staff")
def enrich():
    """Start a whole-shop enrichment now and show its progress."""
    run = start_enrichment(g.shop)
    record(g.shop.id, f"user:{current_user.id}", "start_enrichment", "job", run.id)
    db.session.commit()
    if not is_partial_request():
        flash("Enrichment started.", "ok")
        return redirect(url_for("dashboard.index"))
    return render_page("dashboard/index.html", "job", run=run)


@bp.get("/dashboard/jobs/<job_id>")
@shop_required()
def job(job_id: str):
    """The progress partial; polling stops (286) once the job has finished."""
    run = get_scoped(JobRun, g.shop.id, job_id)
    if run is None:
        abort(404)
    if not is_partial_request():
        return redirect(url_for("dashboard.index"))
    body = render_page("dashboard/index.html", "job", run=run)
    return (body, HTMX_STOP_POLLING) if run.status in ("done", "failed") else body
