"""Agency: every shop an agency user manages, side by side."""

from flask import Blueprint

bp = Blueprint("agency", __name__, url_prefix="/agency")

from app.blueprints.agency import views  # noqa: E402,F401
