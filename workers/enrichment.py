"""Job: enrich one shop (lifecycle, scores, RFM, churn risk, predictions)."""

from __future__ import annotations

from app.logging import get_logger
from app.services.enrichment import fail_run, parse_as_of, run_enrichment

log = get_logger("enrichment")


def enrich_shop(shop_id: int, job_run_id: str, as_of_iso: str | None = None) -> str:
    """Run the whole-shop enrichment tracked by ``job_run_id``; return its final status.

    A failure before the run started (the database away) still marks it failed, with its error.
    """
    try:
        return run_enrichment(shop_id, job_run_id, parse_as_of(as_of_iso)).status
    except Exception as exc:
        try:
            fail_run(job_run_id, exc)
        except Exception:  # noqa: BLE001 - the database is still away: the job's own failure stands
            log.warning("could not mark enrichment run %s failed", job_run_id, exc_info=True)
        raise
