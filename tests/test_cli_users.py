"""``c360 user create`` / ``set-password``: an invalid email is refused, an existing user is
never silently kept on their old password."""

import pytest
import sqlalchemy as sa

from app.extensions import db
from app.models import Membership, User
from app.services.accounts import authenticate

FIRST = "first-pass"  # noqa: S105 - a test password


def _create(runner, email="ann@example.net", password=FIRST, domain="u1.myshopify.com", role="owner"):
    args = ["user", "create", "--email", email, "--password", password, "--shop", domain, "--role", role]
    return runner.invoke(args=args)


@pytest.fixture()
def shops(runner):
    for domain in ("u1.myshopify.com", "u2.myshopify.com"):
        runner.invoke(args=["shop", "create", "--domain", domain])


@pytest.mark.parametrize("email", ["@", "a b@c.com", "ann@", "ann@example", " ", "x" * 320 + "@example.net"])
def test_user_create_refuses_what_is_no_email_address(runner, shops, email):
    result = _create(runner, email=email)
    assert result.exit_code == 1 and "is not an email address" in result.output
    assert db.session.scalar(sa.select(sa.func.count()).select_from(User)) == 0


def test_user_create_for_a_user_already_in_the_shop_refuses_and_keeps_the_password(runner, shops):
    assert _create(runner).exit_code == 0
    result = _create(runner, email=" Ann@Example.net", password="second-pass")
    assert result.exit_code == 1
    assert (
        "user ann@example.net already exists in u1.myshopify.com: to change the password use" in result.output
    )
    assert "c360 user set-password --email ann@example.net" in result.output
    assert authenticate("ann@example.net", "first-pass") and not authenticate(
        "ann@example.net", "second-pass"
    )


def test_user_create_in_another_shop_with_another_password_refuses_and_adds_no_shop(runner, shops):
    _create(runner, role="agency")
    result = _create(runner, password="second-pass", domain="u2.myshopify.com", role="agency")
    assert result.exit_code == 1 and "already exists with another password" in result.output
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Membership)) == 1
    assert not authenticate("ann@example.net", "second-pass")


def test_user_set_password_changes_an_existing_users_password(runner, shops):
    _create(runner)
    result = runner.invoke(
        args=["user", "set-password", "--email", "ANN@example.net", "--password", "second-pass"]
    )
    assert result.exit_code == 0 and "Password changed for ann@example.net." in result.output
    assert authenticate("ann@example.net", "second-pass") and not authenticate(
        "ann@example.net", "first-pass"
    )


@pytest.mark.parametrize(
    ("email", "password", "said"),
    [
        ("nobody@example.net", "long-enough", "no user 'nobody@example.net'"),
        ("ann@example.net", "short", "at least 8 characters"),
    ],
)
def test_user_set_password_refuses_an_unknown_user_or_a_short_password(runner, shops, email, password, said):
    _create(runner)
    result = runner.invoke(args=["user", "set-password", "--email", email, "--password", password])
    assert result.exit_code == 1 and said in result.output
    assert authenticate("ann@example.net", "first-pass")
