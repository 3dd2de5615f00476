"""Customers: the searchable list and each customer's 360 page."""

import datetime as dt

from flask import Blueprint

bp = Blueprint("customers", __name__, url_prefix="/customers")


@bp.app_template_filter("local")
def local_time(value, zone, fmt: str = "%d %b %Y %H:%M"):
    """Show a moment (datetime or ISO string) in ``zone``, with the zone's abbreviation."""
    if not value:
        return "—"
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    moment = value.astimezone(zone)
    return f"{moment.strftime(fmt)} {moment.tzname()}"


from app.blueprints.customers import views  # noqa: E402,F401
