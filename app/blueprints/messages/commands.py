"""``c360 messages …``: send a campaign, follow it, and the sweeper for embedded mode."""

import click

from app.blueprints.messages import bp
from app.cli_support import domain_errors, shop_by_domain
from app.config import provider_settings
from app.services import campaign_sends
from app.services.messaging import sweep_messages


@bp.cli.command("retry-due")
def retry_due_command():
    """Retry every waiting message whose time has come, and re-queue lost provider hand-overs."""
    done = sweep_messages(provider_settings())
    click.echo(f"retried {done['retried']} waiting message(s)")
    click.echo(f"queued {done['handed_over']} provider hand-over(s) that never happened")
    click.echo(f"queued {done['chunks']} campaign chunk(s) left pending")


@bp.cli.command("send-campaign")
@click.option("--shop", "domain", required=True, help="the shop's myshopify domain")
@click.option("--channel", required=True, type=click.Choice(["email", "sms", "whatsapp", "push"]))
@click.option("--campaign", "campaign_id", default=None, help="the campaign's id, shown in the Messages log")
@click.option(
    "--profiles",
    type=click.File("r"),
    default=None,
    help="a file of profile ids, one per line (default: every live profile of the shop)",
)
def send_campaign_command(domain, channel, campaign_id, profiles):
    """Gate and send a campaign to an audience, in chunks spread over the workers."""
    shop = shop_by_domain(domain)
    if profiles is None:
        audience = campaign_sends.live_audience(shop.id)
    else:
        try:
            audience = [int(line) for line in profiles if line.strip()]
        except ValueError:
            raise click.ClickException("--profiles must hold one profile id per line") from None
    with domain_errors():
        send = campaign_sends.start_send(shop, audience, channel, campaign_id=campaign_id)
    _echo_progress(campaign_sends.progress(shop, send.id))


@bp.cli.command("campaign-status")
@click.option("--shop", "domain", required=True, help="the shop's myshopify domain")
@click.argument("send_id", type=int)
def campaign_status_command(domain, send_id):
    """Where a campaign send stands: chunks done, sent, blocked and why."""
    shop = shop_by_domain(domain)
    with domain_errors():
        _echo_progress(campaign_sends.progress(shop, send_id))


@bp.cli.command("retry-chunks")
@click.option("--shop", "domain", required=True, help="the shop's myshopify domain")
@click.argument("send_id", type=int)
def retry_chunks_command(domain, send_id):
    """Send a campaign's failed chunks again (once the cause is fixed), judged as of now."""
    shop = shop_by_domain(domain)
    with domain_errors():
        queued = campaign_sends.retry_failed(shop, send_id)
        click.echo(f"queued {queued} failed chunk(s) of send {send_id} again")
        _echo_progress(campaign_sends.progress(shop, send_id))


def _echo_progress(progress: campaign_sends.SendProgress) -> None:
    result = progress.result
    state = "finished" if progress.finished else "in progress"
    click.echo(
        f"send {progress.send_id}: {state}, {progress.done}/{progress.chunks} chunk(s) done"
        + (f", {progress.failed_chunks} failed" if progress.failed_chunks else "")
    )
    click.echo(
        f"audience {progress.audience}: sent {result.sent}, blocked {result.blocked}, "
        f"no address {result.failed}"
    )
    for reason, count in result.reasons.most_common():
        if reason != "sent":
            click.echo(f"  {reason}: {count}")
