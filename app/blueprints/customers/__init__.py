"""Customers: the searchable list and each customer's 360 page."""

from flask import Blueprint

bp = Blueprint("customers", __name__, url_prefix="/customers")

from app.blueprints.customers import views  # noqa: E402,F401
