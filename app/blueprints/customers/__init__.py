"""Customers: the searchable list and each customer's 360 page."""

import datetime as dt

from flask import Blueprint

bp = Blueprint("customers", __name__, url_prefix="/customers")


@bp.app_template_filter("local")
def local_time(value, zone, fmt: str = "%d %b %Y %H:%M"):
    """Show a moment (datetime or ISO string) in ``zone``, with the zone's abbreviation when the
    format shows a time of day (a date alone reads "28 Oct 2026", not "28 Oct 2026 GMT")."""
    if not value:
        return "—"
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    moment = value.astimezone(zone)
    shown = moment.strftime(fmt)
    return f"{shown} {moment.tzname()}" if "%H" in fmt or "%I" in fmt else shown


from app.blueprints.customers import views  # noqa: E402,F401
