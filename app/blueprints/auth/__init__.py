"""Sign in, sign out, and switching between the shops a user belongs to."""

from flask import Blueprint

bp = Blueprint("auth", __name__)

from app.blueprints.auth import expired, views  # noqa: E402,F401
