"""API: ``GET|PUT /settings``."""

from flask import g, jsonify

from app.blueprints.api import bp, json_body
from app.extensions import db
from app.services.audit import record
from app.services.enrichment import restage_after_settings
from app.services.shop_settings import effective_settings, update_settings


@bp.get("/settings")
def get_settings():
    """The shop's effective settings."""
    return jsonify(effective_settings(g.api_shop))


@bp.put("/settings")
def put_settings():
    """Merge the given keys, validate, save; 422 with the reason for a bad value."""
    patch = json_body()
    before = effective_settings(g.api_shop)
    result = update_settings(g.api_shop, patch)
    record(g.api_shop.id, "api", "update_settings", details={"keys": sorted(patch)})
    db.session.commit()
    restage_after_settings(g.api_shop, before, result)
    return jsonify(result)
