"""What every ``c360`` command needs: a domain error as a clean message, a shop by its domain, an
import's failures reported."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import click

from app.errors import DomainError
from app.extensions import db
from app.models import Shop
from app.services import accounts


@contextmanager
def domain_errors() -> Iterator[None]:
    """Roll back and turn a ``DomainError`` into the command's error message (exit status 1)."""
    try:
        yield
    except DomainError as exc:
        db.session.rollback()
        raise click.ClickException(exc.message) from None


def shop_by_domain(domain: str) -> Shop:
    """The shop of ``domain``, or the command fails with a clear message."""
    with domain_errors():
        return accounts.require_shop(domain)


def report_failures(failed: list[tuple[int, str]], label: str, shown: int = 20) -> None:
    """List an import's skipped items by file line on stderr (the first ``shown``, then how many
    more) and exit 1; ``label`` names an item (``line``, or ``row`` for a CSV record).

    Returns when nothing was skipped. A file that fails everywhere would otherwise bury the
    summary under thousands of lines of the same reason.
    """
    if not failed:
        return
    for number, reason in failed[:shown]:
        click.echo(f"  {label} {number}: {reason}", err=True)
    if len(failed) > shown:
        click.echo(f"  … and {len(failed) - shown} more", err=True)
    raise SystemExit(1)
