"""Factories and action helpers shared by the tests (``AuthActions`` style)."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import pytest
import sqlalchemy as sa

from app.extensions import db
from app.services import accounts

PASSWORD = "correct horse battery"


@dataclass
class ShopFixture:
    """A shop with an owner login and an API token."""

    id: int
    domain: str
    secret: str
    owner_email: str
    token: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    @property
    def model(self):
        from app.models import Shop

        return db.session.get(Shop, self.id)


def make_shop(
    domain: str = "alpha.myshopify.com",
    *,
    plan: str = "pro",
    country: str = "GB",
    timezone: str = "Europe/London",
    currency: str = "GBP",
    role: str = "owner",
    **provider,
) -> ShopFixture:
    """Create a shop, an owner user and a token; commit."""
    secret = f"secret-{domain}"
    shop = accounts.create_shop(
        domain, secret=secret, plan=plan, timezone=timezone, currency=currency, country=country, **provider
    )
    email = f"{role}@{domain}"
    accounts.create_user(email, PASSWORD, shop, role)
    token = accounts.create_token(shop)
    db.session.commit()
    return ShopFixture(shop.id, shop.domain, secret, email, token)


@pytest.fixture()
def shop(db) -> ShopFixture:
    """Shop A (Pro plan, GB)."""
    return make_shop("alpha.myshopify.com")


@pytest.fixture()
def other_shop(db) -> ShopFixture:
    """Shop B, for tenancy tests."""
    return make_shop("bravo.myshopify.com")


class AuthActions:
    """Log in and out through the real form."""

    def __init__(self, client):
        self.client = client

    def login(self, email: str, password: str = PASSWORD):
        return self.client.post("/login", data={"email": email, "password": password})

    def login_as(self, shop: ShopFixture):
        return self.login(shop.owner_email)

    def logout(self):
        return self.client.post("/logout")


@pytest.fixture()
def auth(client) -> AuthActions:
    return AuthActions(client)


@pytest.fixture()
def fixtures_dir():
    from tests.conftest import FIXTURES

    return FIXTURES


@contextlib.contextmanager
def planner_stats_held():
    """Hold off the clock-driven ANALYZE of drains and imports while the block runs.

    ``planner_stats.refresh_stale_now_and_then`` looks at most every few seconds by the
    clock, so a block that counts statements would count its look and ANALYZEs only
    sometimes.
    """
    from app.services import planner_stats

    held = planner_stats._last_look[0]
    planner_stats._last_look[0] = float("inf")
    try:
        yield
    finally:
        planner_stats._last_look[0] = held


@contextlib.contextmanager
def statements():
    """Collect the SQL statements sent while the block runs (not the planner's clock-driven ANALYZE)."""
    seen: list[str] = []

    def listener(conn, cursor, statement, params, context, executemany):
        seen.append(statement)

    sa.event.listen(db.engine, "before_cursor_execute", listener)
    try:
        with planner_stats_held():
            yield seen
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", listener)
