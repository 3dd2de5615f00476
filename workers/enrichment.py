"""Job: enrich one shop (lifecycle, scores, RFM, churn risk, predictions)."""

from __future__ import annotations

from app.services.enrichment import parse_as_of, run_enrichment


def enrich_shop(shop_id: int, job_run_id: str, as_of_iso: str | None = None) -> str:
    """Run the whole-shop enrichment tracked by ``job_run_id``; return its final status."""
    return run_enrichment(shop_id, job_run_id, parse_as_of(as_of_iso)).status
