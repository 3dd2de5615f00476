"""Messages: the log of every send attempt and what the gate decided."""

from flask import Blueprint

bp = Blueprint("messages", __name__, url_prefix="/messages")
bp.cli.help = "Campaign sends and the retries of waiting messages."

from app.blueprints.messages import commands, views  # noqa: E402,F401
