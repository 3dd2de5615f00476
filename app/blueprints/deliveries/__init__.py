"""Failed deliveries: the dead-letter queue in the console, with retry buttons."""

from flask import Blueprint

bp = Blueprint("deliveries", __name__, url_prefix="/deliveries")

from app.blueprints.deliveries import views  # noqa: E402,F401
