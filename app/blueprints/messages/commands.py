"""``c360 messages retry-due``: the sweeper for embedded mode (no scheduler without Redis)."""

import click

from app.blueprints.messages import bp
from app.services.messaging import deliver_due, retry_due


@bp.cli.command("retry-due")
def retry_due_command():
    """Retry every waiting message whose time has come, and re-queue lost provider hand-overs."""
    click.echo(f"retried {retry_due()} waiting message(s)")
    click.echo(f"queued {deliver_due()} provider hand-over(s) that never happened")
