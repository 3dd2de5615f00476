"""The ``c360`` command line (CONTRACT.md §1), a Flask CLI group.

``main`` builds the app through ``create_app`` so every command runs in an
app context with the environment's configuration.
"""

from __future__ import annotations

import os
import shutil
import sys

import click
from flask import Flask, current_app
from flask.cli import FlaskGroup, with_appcontext

from app.cli_errors import C360Group
from app.cli_support import domain_errors
from app.errors import Conflict
from app.extensions import db
from app.plans import PLAN_ORDER
from app.services import accounts

# Path without query string and no client address: queries carry emails and
# phone numbers (search, identifier lookups) and the pixel's callers are shoppers.
ACCESS_LOG_FORMAT = '%(t)s "%(m)s %(U)s" %(s)s %(B)s %(M)sms'
RESET_COMMAND = "`c360 user set-password --email {email} --password P`"
USER_EXISTS_HINTS = {
    "user_exists": f"to change the password use {RESET_COMMAND}",
    "other_password": f"give their password to add this shop, or first change it with {RESET_COMMAND}",
}


def web_processes(config) -> int:
    """Web processes by default: two with Redis; one in embedded mode, where what the processes share
    lives in each (the pixel's per-client rate limit, the minute sweep's thread): two counted every
    client's events twice as leniently, and swept twice."""
    return 2 if config.get("REDIS_URL") else 1


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, type=int, show_default=True)
@click.option(
    "--workers",
    default=None,
    type=click.IntRange(min=1),
    help="gunicorn worker processes [default: 2 with Redis, 1 in embedded mode]",
)
def serve(host: str, port: int, workers: int | None):
    """Serve the console, webhooks and API (gunicorn where available)."""
    workers = workers or web_processes(current_app.config)
    gunicorn = shutil.which("gunicorn", path=os.path.dirname(sys.executable)) or shutil.which("gunicorn")
    click.echo(f"Customer 360 on http://{host}:{port}/")
    if gunicorn:
        os.execv(  # noqa: S606 - replaces this process with the WSGI server
            gunicorn,
            [
                gunicorn,
                "--bind",
                f"{host}:{port}",
                "--workers",
                str(workers),
                "--threads",
                "4",
                "--access-logfile",
                "-",
                "--access-logformat",
                ACCESS_LOG_FORMAT,
                "wsgi:app",
            ],
        )
    from workers import embedded

    embedded.start(current_app._get_current_object())
    current_app.run(host=host, port=port, threaded=True)


@click.group("shop")
def shop_group():
    """Manage shops."""


@shop_group.command("create")
@click.option("--domain", required=True)
@click.option("--secret", default=None, help="Shopify app secret (webhook HMAC)")
@click.option("--plan", type=click.Choice(PLAN_ORDER), default="free", show_default=True)
@click.option("--timezone", default="UTC", show_default=True)
@click.option("--currency", default="USD", show_default=True)
@click.option("--country", default=None)
@click.option("--twilio-auth-token", default=None)
@click.option("--whatsapp-app-secret", default=None)
@click.option("--whatsapp-verify-token", default=None)
@click.option("--sendgrid-public-key", default=None, help="PEM or base64 DER public key")
@with_appcontext
def shop_create(domain, secret, plan, timezone, currency, country, **provider):
    """Create a shop and print its id."""
    with domain_errors():
        shop = accounts.create_shop(
            domain,
            secret=secret,
            plan=plan,
            timezone=timezone,
            currency=currency,
            country=country,
            **provider,
        )
    db.session.commit()
    click.echo(shop.id)


@shop_group.command("update")
@click.option("--domain", required=True)
@click.option("--secret", default=None, help="a new Shopify app secret (webhook HMAC)")
@click.option("--plan", type=click.Choice(PLAN_ORDER), default=None)
@click.option("--timezone", default=None)
@click.option("--currency", default=None)
@click.option("--country", default=None)
@click.option("--twilio-auth-token", default=None)
@click.option("--whatsapp-app-secret", default=None)
@click.option("--whatsapp-verify-token", default=None)
@click.option("--sendgrid-public-key", default=None, help="PEM or base64 DER public key")
@click.option("--reinstall", is_flag=True, help="the merchant installed the app again after app/uninstalled")
@with_appcontext
def shop_update(domain, reinstall, **fields):
    """Change a shop: rotate a provider's secret, change its plan, bring it back after an uninstall.

    Prints what changed by name, never a secret's value.
    """
    from app.services.enrichment import restage_after_settings
    from app.services.shop_settings import effective_settings

    with domain_errors():
        shop = accounts.require_shop(domain)
        before = effective_settings(shop)
        changed = accounts.update_shop(shop, reinstall=reinstall, **fields)
    db.session.commit()
    # A plan without custom lifecycle windows falls back to the defaults: restage now, not tonight.
    restage_after_settings(shop, before, effective_settings(shop))
    click.echo(f"{shop.domain}: " + (", ".join(changed) + " updated" if changed else "nothing to change"))


@click.group("token")
def token_group():
    """Manage admin API tokens."""


@token_group.command("create")
@click.option("--shop", "domain", required=True)
@click.option("--name", default=None)
@with_appcontext
def token_create(domain, name):
    """Print a new admin API token (shown once, stored hashed)."""
    with domain_errors():
        token = accounts.create_token(accounts.require_shop(domain), name)
    db.session.commit()
    click.echo(token)


@click.group("user")
def user_group():
    """Manage console users."""


@user_group.command("create")
@click.option("--email", required=True)
@click.option("--password", required=True)
@click.option("--shop", "domain", required=True)
@click.option("--role", type=click.Choice(["owner", "staff", "support", "agency"]), required=True)
@with_appcontext
def user_create(email, password, domain, role):
    """Create a console user in a shop (run again with another shop, and their password, for agency users)."""
    with domain_errors():
        try:
            user = accounts.create_user(email, password, accounts.require_shop(domain), role)
        except Conflict as exc:
            db.session.rollback()
            hint = USER_EXISTS_HINTS[exc.code].format(email=email.strip().lower())
            raise click.ClickException(f"{exc.message}: {hint}") from None
    db.session.commit()
    click.echo(user.id)


@user_group.command("set-password")
@click.option("--email", required=True)
@click.option("--password", required=True)
@with_appcontext
def user_set_password(email, password):
    """Give an existing console user a new password."""
    with domain_errors():
        user = accounts.set_password(email, password)
    db.session.commit()
    click.echo(f"Password changed for {user.email}.")


@click.group("seed")
def seed_group():
    """Demo data."""


@seed_group.command("demo")
@click.option("--customers", default=300, show_default=True)
@click.option("--port", default=5000, type=int, show_default=True, help="the port the console is served on")
@with_appcontext
def seed_demo(customers: int, port: int):
    """Create demo.myshopify.com with the Sarah story and generated customers."""
    from seed.demo import seed_demo as run

    login = run(customers=customers, progress=click.echo)
    click.echo("")
    click.echo("Demo shop ready: demo.myshopify.com")
    click.echo(f"  Log in at http://127.0.0.1:{port}/login as {login.email} / {login.password}")


@click.command("worker")
@click.option("--burst", is_flag=True, help="exit when the queues are empty")
@with_appcontext
def worker(burst: bool):
    """Run an RQ worker for the project's queues (needs REDIS_URL)."""
    from workers.runner import run_worker

    if not current_app.config.get("REDIS_URL"):
        raise click.ClickException("REDIS_URL is not set: in embedded mode jobs run in-process")
    from workers.ingest import schedule_sweep

    schedule_sweep()
    run_worker(burst=burst)


@click.command("enrich")
@click.option("--shop", "domain", default=None, help="the shop's domain")
@click.option("--all", "all_shops", is_flag=True, help="every installed shop (the nightly cron entry)")
@click.option("--as-of", "as_of", default=None, help="evaluate as of DATE (YYYY-MM-DD) for backtests")
@click.option("--queue", "use_queue", is_flag=True, help="queue for `c360 worker` instead")
@with_appcontext
def enrich(domain, all_shops, as_of, use_queue):
    """Recompute lifecycle, RFM, churn risk, LTV and predictions now, or as they were on DATE."""
    from app.services import enrichment, shop_settings

    if bool(domain) == bool(all_shops):
        raise click.UsageError("give --shop DOMAIN or --all")
    with domain_errors():
        enrichment.parse_as_of(as_of)  # a bad date is refused before any shop is read
        shops = enrichment.shops_to_enrich() if all_shops else [accounts.require_shop(domain)]
        for shop in shops:
            moment = enrichment.parse_as_of(as_of, shop_settings.shop_timezone(shop))  # the shop's day
            if use_queue:
                run = enrichment.start_enrichment(shop, moment)
                click.echo(f"{shop.domain}: queued job {run.id}")
                continue
            run, _ = enrichment.create_run(shop, moment)
            run = enrichment.run_enrichment(shop.id, run.id, moment)
            stages = ", ".join(f"{k} {v}" for k, v in sorted(run.result["stages"].items()))
            when = f" as of {moment.isoformat()}" if moment else ""
            click.echo(
                f"{shop.domain}: enriched {run.result['profiles']} profiles{when} ({stages}); job {run.id}"
            )


def register_commands(app: Flask) -> None:
    """Attach every command to ``app.cli``."""
    from app.cli_ingest import COMMANDS as INGEST_COMMANDS

    for command in (serve, shop_group, token_group, user_group, seed_group, worker, enrich, *INGEST_COMMANDS):
        app.cli.add_command(command)


def _create_app(*_args, **_kwargs):
    from app import create_app

    return create_app()


def build_cli() -> FlaskGroup:
    """The ``c360`` group: every command of the app, Flask's and Flask-Migrate's."""
    cli = C360Group(create_app=_create_app, add_default_commands=True, load_dotenv=False)
    cli.help = "Customer 360: one profile per shopper, and a gate that never messages them when it shouldn't."
    return cli


def main() -> None:
    """Entry point of the ``c360`` console script."""
    build_cli().main(prog_name="c360")
