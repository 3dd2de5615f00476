"""What every ``c360`` command needs: a domain error as a clean message, a shop by its domain."""

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
