"""Settings: lifecycle windows, caps, fatigue threshold, quiet hours, identity blocklist."""

from flask import Blueprint

bp = Blueprint("settings", __name__, url_prefix="/settings")

from app.blueprints.settings import views  # noqa: E402,F401
