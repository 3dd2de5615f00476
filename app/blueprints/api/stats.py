"""API: ``GET /stats``."""

from flask import g, jsonify

from app.blueprints.api import bp
from app.services.stats import shop_stats


@bp.get("/stats")
def stats():
    """Shop totals that dashboards show."""
    return jsonify(shop_stats(g.api_shop.id))
