"""``c360 messages retry-due``: the sweeper for embedded mode (no scheduler without Redis)."""

import click

from app.blueprints.messages import bp
from app.services.messaging import retry_due


@bp.cli.command("retry-due")
def retry_due_command():
    """Retry every waiting journey or time-sensitive message whose time has come."""
    click.echo(f"retried {retry_due()} waiting message(s)")
