"""``c360 dlq …`` and ``c360 backfill``: the dead-letter queue and order history import."""

from __future__ import annotations

import click
from flask.cli import with_appcontext

from app.cli_support import report_failures, shop_by_domain
from app.digits import counted


@click.group("dlq")
def dlq_group():
    """The dead-letter queue of failed deliveries."""


@dlq_group.command("list")
@click.option("--shop", "domain", default=None, help="only this shop")
@click.option("--limit", default=1000, show_default=True, type=click.IntRange(min=1), help="rows at most")
@with_appcontext
def dlq_list(domain, limit):
    """List dead and failed deliveries, newest first (saying how many more there are)."""
    from app.services.ingest.inbox import failed_deliveries

    shop_id = shop_by_domain(domain).id if domain else None
    rows = failed_deliveries(shop_id, limit=limit + 1)
    if not rows:
        click.echo("The dead-letter queue is empty.")
        return
    more = len(rows) > limit
    rows = rows[:limit]
    click.echo(f"{'id':>8}  {'shop':>5}  {'provider':<9} {'topic':<40} {'status':<7} {'tries':>5}  error")
    for r in rows:
        error = (r.last_error or "").replace("\n", " ")[:80]
        topic = r.topic[:40]
        where = f"{r.id:>8}  {r.shop_id:>5}  {r.provider:<9} {topic:<40}"
        click.echo(f"{where} {r.status:<7} {r.attempts:>5}  {error}")
    if more:
        click.echo(f"… and more: these are the newest {limit}; --limit N lists more, --shop one shop's.")


@dlq_group.command("retry")
@click.argument("delivery_id", required=False, type=int)
@click.option("--all", "retry_all", is_flag=True, help="retry every dead or failed delivery")
@with_appcontext
def dlq_retry(delivery_id, retry_all):
    """Retry one delivery by ID, or all of them with --all."""
    from app.tenancy import could_be_row_id
    from workers import dlq

    if (delivery_id is None) == (not retry_all):
        raise click.UsageError("give either a delivery ID or --all")
    if retry_all:
        click.echo(dlq.retry_all(None, capped=False).all())
        return
    # A number no row id can be is in no queue (PostgreSQL refuses even to look it up).
    report = dlq.retry_one(delivery_id) if delivery_id > 0 and could_be_row_id(delivery_id) else None
    if report is None or report.not_retryable:
        raise click.ClickException(f"delivery {delivery_id} is not in the dead-letter queue")
    click.echo(report.one(delivery_id))


@dlq_group.command("sweep")
@click.option(
    "--stale-after", default=60, show_default=True, help="seconds before a pending row is re-queued"
)
@with_appcontext
def dlq_sweep(stale_after):
    """Re-queue deliveries committed but never processed, and failed ones whose retry is due."""
    from workers.ingest import sweep_deliveries

    click.echo(f"{sweep_deliveries(stale_after_seconds=stale_after)} deliveries queued.")


@click.command("backfill")
@click.option("--shop", "domain", required=True)
@click.option("--orders", "orders_file", required=True, type=click.Path(exists=True, dir_okay=False))
@with_appcontext
def backfill(domain, orders_file):
    """Import Shopify order history: one order object (REST Admin API shape) per line."""
    from app.services.ingest.backfill import backfill_orders

    shop = shop_by_domain(domain)
    # A byte that is not UTF-8 spoils its line only: read as an escape, refused by the line's check.
    with open(orders_file, encoding="utf-8", errors="surrogateescape") as fh:
        total = sum(1 for _ in fh)

    def read_lines():
        with open(orders_file, encoding="utf-8", errors="surrogateescape") as fh:
            yield from fh

    # The first pass resolves every buyer at once, before the bar moves.
    click.echo(f"Resolving the buyers of {counted(total, 'line')}, then importing the orders.")
    with click.progressbar(length=total, label="orders") as bar:
        result = backfill_orders(shop, read_lines, progress=bar.update)
    click.echo(f"{counted(result.applied, 'order')} imported, {counted(len(result.failed), 'line')} skipped.")
    report_failures(result.failed, "line")


@click.command("import-profiles")
@click.option("--shop", "domain", required=True)
@click.option("--csv", "csv_file", required=True, type=click.Path(exists=True, dir_okay=False))
@with_appcontext
def import_profiles(domain, csv_file):
    """Import a Klaviyo-style profile export (Email, Phone Number, names, consent columns)."""
    from app.services.ingest.csv_source import detect_encoding
    from app.services.ingest.profile_import import check_header, count_rows
    from app.services.ingest.profile_import import import_profiles as run_import

    shop = shop_by_domain(domain)
    encoding = detect_encoding(csv_file)
    if encoding.note:
        click.echo(encoding.note)

    def read_lines():
        # A byte the encoding cannot read spoils its row only: read as an escape, refused by the row's check.
        with open(csv_file, encoding=encoding.codec, errors="surrogateescape", newline="") as fh:
            yield from fh

    try:
        check_header(read_lines)
        total = count_rows(read_lines)
        # The first pass resolves every row's person at once, before the bar moves.
        click.echo(
            f"Resolving the people of {counted(total, 'row')}, then importing their names and consent."
        )
        with click.progressbar(length=total, label="profiles") as bar:
            result = run_import(shop, read_lines, progress=bar.update)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    for warning in result.warnings:
        click.echo(f"Warning: {warning}")
    click.echo(
        f"{counted(result.applied, 'profile')} imported, {counted(len(result.failed), 'row')} skipped."
    )
    report_failures(result.failed, "row")  # numbered by the file line the row starts on


COMMANDS = (dlq_group, backfill, import_profiles)
