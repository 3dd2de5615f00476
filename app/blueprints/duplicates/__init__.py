"""Duplicates: review merge candidates side by side, merge or reject, undo recent merges."""

from flask import Blueprint

bp = Blueprint("duplicates", __name__, url_prefix="/duplicates")

from app.blueprints.duplicates import views  # noqa: E402,F401
