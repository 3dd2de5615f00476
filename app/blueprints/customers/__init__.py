"""Customers: the searchable list and each customer's 360 page."""

from flask import Blueprint

from app.services.timezones import local_time

bp = Blueprint("customers", __name__, url_prefix="/customers")
bp.add_app_template_filter(local_time, "local")


from app.blueprints.customers import views  # noqa: E402,F401
