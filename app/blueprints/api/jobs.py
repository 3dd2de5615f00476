"""API: ``POST /enrichment/run`` and ``GET /jobs/{id}`` (progress of long jobs)."""

from flask import g, jsonify, request, url_for

from app.blueprints.api import bp, json_body
from app.services.enrichment import job_status, parse_as_of, start_enrichment
from app.services.messaging_api import known_fields
from app.services.shop_settings import shop_timezone


@bp.post("/enrichment/run")
def run_enrichment():
    """Queue a whole-shop enrichment (optional ``{"as_of": DATE}``); 202 with the job id."""
    body = json_body() if request.get_data() else {}  # no body: now; a broken one is a 400, not a run
    known_fields(body, ("as_of",))  # {"asof": …} ran a live recompute where a backtest was meant
    as_of = parse_as_of(body.get("as_of"), shop_timezone(g.api_shop))
    run = start_enrichment(g.api_shop, as_of)
    response = jsonify({"job_id": run.id, "status": run.status})
    response.status_code = 202
    response.headers["Location"] = url_for("api.get_job", job_id=run.id)
    return response


@bp.get("/jobs/<job_id>")
def get_job(job_id: str):
    """Status, progress, total and error of one of this shop's jobs."""
    return jsonify(job_status(g.api_shop.id, job_id))
