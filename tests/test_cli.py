"""The ``c360`` commands of CONTRACT.md §1 that the foundation provides."""

import datetime as dt

import pytest
import sqlalchemy as sa

from app.extensions import db
from app.models import ApiToken, Membership, Profile, Shop, User
from app.models.base import utcnow
from app.services.accounts import hash_token
from tests.ingest_support import SG_PUBLIC


def test_shop_create_takes_every_option_and_prints_the_id(runner):
    result = runner.invoke(
        args=[
            "shop",
            "create",
            "--domain",
            "Cli.MyShopify.com",
            "--secret",
            "s",
            "--plan",
            "agency",
            "--timezone",
            "Australia/Sydney",
            "--currency",
            "aud",
            "--country",
            "au",
            "--twilio-auth-token",
            "tw",
            "--whatsapp-app-secret",
            "wa",
            "--whatsapp-verify-token",
            "vt",
            "--sendgrid-public-key",
            SG_PUBLIC,
        ]
    )
    assert result.exit_code == 0, result.output
    shop = db.session.get(Shop, int(result.output.strip()))
    assert (shop.domain, shop.plan, shop.timezone, shop.currency, shop.country) == (
        "cli.myshopify.com",
        "agency",
        "Australia/Sydney",
        "AUD",
        "AU",
    )
    assert (shop.shopify_secret, shop.twilio_auth_token, shop.whatsapp_app_secret) == ("s", "tw", "wa")
    assert (shop.whatsapp_verify_token, shop.sendgrid_public_key) == ("vt", SG_PUBLIC)


def test_a_sendgrid_key_that_is_not_one_is_refused_when_given(runner):
    """Accepted as given, every SendGrid post was a 401 for ever and nobody was told why."""
    for key in ("notakey", "-----BEGIN PUBLIC KEY-----\\nMFkw\\n-----END PUBLIC KEY-----"):
        result = runner.invoke(
            args=["shop", "create", "--domain", "sg.myshopify.com", "--sendgrid-public-key", key]
        )
        assert result.exit_code != 0 and "sendgrid public key is not one" in result.output


def test_shop_update_rotates_a_secret_changes_the_plan_and_brings_an_uninstalled_shop_back(runner, db):
    from app.models.base import utcnow

    assert (
        runner.invoke(args=["shop", "create", "--domain", "up.myshopify.com", "--secret", "old"]).exit_code
        == 0
    )
    shop = db.session.scalar(sa.select(Shop).where(Shop.domain == "up.myshopify.com"))
    shop.uninstalled_at = utcnow()  # as app/uninstalled leaves it
    db.session.commit()
    again = runner.invoke(args=["shop", "create", "--domain", "up.myshopify.com"])
    assert again.exit_code != 0 and "--reinstall" in again.output
    result = runner.invoke(
        args=[
            "shop",
            "update",
            "--domain",
            "up.myshopify.com",
            "--secret",
            "new",
            "--plan",
            "pro",
            "--twilio-auth-token",
            "tw2",
            "--reinstall",
        ]
    )
    assert result.exit_code == 0, result.output
    assert "new" not in result.output and "tw2" not in result.output  # names, never values
    db.session.expire_all()
    shop = db.session.get(Shop, shop.id)
    assert (shop.shopify_secret, shop.plan, shop.twilio_auth_token, shop.uninstalled_at) == (
        "new",
        "pro",
        "tw2",
        None,
    )
    unchanged = runner.invoke(args=["shop", "update", "--domain", "up.myshopify.com", "--plan", "pro"])
    assert "nothing to change" in unchanged.output
    assert (
        runner.invoke(args=["shop", "update", "--domain", "none.myshopify.com", "--plan", "pro"]).exit_code
        != 0
    )


@pytest.mark.parametrize(
    ("option", "named"),
    [("--secret", "secret is empty"), ("--whatsapp-verify-token", "whatsapp verify token")],
)
def test_a_secret_given_blank_is_refused_with_its_name_and_nothing_is_stored(runner, db, option, named):
    """An empty Shopify secret was stored: every webhook then answered 401, and the command had
    exited 0 printing the shop's id."""
    for blank in ("", "  "):
        made = runner.invoke(args=["shop", "create", "--domain", "blank.myshopify.com", option, blank])
        assert made.exit_code != 0 and named in made.output, made.output
    assert db.session.scalar(sa.select(Shop).where(Shop.domain == "blank.myshopify.com")) is None
    assert (
        runner.invoke(args=["shop", "create", "--domain", "blank.myshopify.com", "--secret", "s"]).exit_code
        == 0
    )
    update = runner.invoke(args=["shop", "update", "--domain", "blank.myshopify.com", option, " "])
    assert update.exit_code != 0 and named in update.output


@pytest.mark.parametrize("zone", ["Mars/Base", "Europe/" + "x" * 260, "localtime", "Factory"])
def test_shop_create_rejects_a_bad_time_zone_clearly(runner, zone):
    result = runner.invoke(args=["shop", "create", "--domain", "x.myshopify.com", "--timezone", zone])
    assert result.exit_code != 0
    assert "unknown time zone" in result.output


@pytest.mark.parametrize("country", ["ZZ", "UK", "G1"])
def test_shop_create_rejects_a_country_that_is_no_country(runner, country):
    """Phones without a country code are read in the shop's country: ZZ left them all unlinkable."""
    result = runner.invoke(args=["shop", "create", "--domain", "cc.myshopify.com", "--country", country])
    assert result.exit_code != 0 and "is not a 2-letter ISO country code" in result.output
    assert (
        runner.invoke(args=["shop", "create", "--domain", "xk.myshopify.com", "--country", "xk"]).exit_code
        == 0
    )
    # A real code no phone plan knows (Pitcairn) is still a country.
    pitcairn = runner.invoke(args=["shop", "create", "--domain", "pn.myshopify.com", "--country", "PN"])
    assert pitcairn.exit_code == 0, pitcairn.output


@pytest.mark.parametrize("zone", ["Europe/" + "x" * 260, "posixrules"])
def test_shop_update_rejects_a_bad_time_zone_clearly(runner, zone):
    assert runner.invoke(args=["shop", "create", "--domain", "tz.myshopify.com"]).exit_code == 0
    result = runner.invoke(args=["shop", "update", "--domain", "tz.myshopify.com", "--timezone", zone])
    assert result.exit_code != 0 and "unknown time zone" in result.output
    assert db.session.scalar(sa.select(Shop.timezone).where(Shop.domain == "tz.myshopify.com")) == "UTC"


@pytest.mark.parametrize("domain", ["bad domain", "foo", "a@b", "-x.myshopify.com", "x..myshopify.com"])
def test_shop_create_refuses_what_is_no_domain(runner, domain):
    result = runner.invoke(args=["shop", "create", "--domain", domain])
    assert result.exit_code != 0 and "is not a domain" in result.output


def test_shop_create_takes_a_pasted_admin_url_for_its_domain(runner):
    result = runner.invoke(args=["shop", "create", "--domain", "https://Pasted.myshopify.com/admin/orders"])
    assert result.exit_code == 0, result.output
    assert db.session.scalar(sa.select(Shop.domain)) == "pasted.myshopify.com"


def test_shop_create_refuses_a_duplicate_domain(runner):
    runner.invoke(args=["shop", "create", "--domain", "dup.myshopify.com"])
    result = runner.invoke(args=["shop", "create", "--domain", "dup.myshopify.com"])
    assert result.exit_code != 0 and "already exists" in result.output


def test_token_create_prints_a_token_stored_only_as_a_hash(runner):
    runner.invoke(args=["shop", "create", "--domain", "t.myshopify.com"])
    token = runner.invoke(args=["token", "create", "--shop", "t.myshopify.com"]).output.strip()
    assert token.startswith("c360_")
    stored = db.session.scalar(sa.select(ApiToken))
    assert stored.token_hash == hash_token(token) and token not in stored.token_hash


def test_user_create_gives_an_agency_user_several_shops(runner):
    for domain in ("a1.myshopify.com", "a2.myshopify.com"):
        runner.invoke(args=["shop", "create", "--domain", domain])
        result = runner.invoke(
            args=[
                "user",
                "create",
                "--email",
                "ag@example.net",
                "--password",
                "longenough",
                "--shop",
                domain,
                "--role",
                "agency",
            ]
        )
        assert result.exit_code == 0, result.output
    user = db.session.scalar(sa.select(User))
    assert user.password_hash != "longenough"
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Membership)) == 2


def test_token_for_unknown_shop_fails_clearly(runner):
    result = runner.invoke(args=["token", "create", "--shop", "nope.myshopify.com"])
    assert result.exit_code != 0 and "no shop" in result.output


def test_seed_demo_creates_the_demo_shop_and_prints_a_working_login(runner, client, auth):
    result = runner.invoke(args=["seed", "demo", "--customers", "40"])
    assert result.exit_code == 0, result.output
    line = next(x for x in result.output.splitlines() if "Log in at" in x)
    email, password = line.split(" as ")[1].split(" / ")
    shop = db.session.scalar(sa.select(Shop).where(Shop.domain == "demo.myshopify.com"))
    assert (
        db.session.scalar(sa.select(sa.func.count()).select_from(Profile).where(Profile.shop_id == shop.id))
        >= 40
    )
    assert auth.login(email.strip(), password.strip()).status_code == 302
    assert client.get("/customers/").status_code == 200


def test_seed_demo_sees_nobody_in_the_future(runner):
    """A demo customer last seen weeks ahead scored as "new" with churn risk 1.0."""
    runner.invoke(args=["seed", "demo", "--customers", "60"])
    latest = db.session.scalar(sa.select(sa.func.max(Profile.last_seen_at)))
    assert latest is not None and (latest if latest.tzinfo else latest.replace(tzinfo=dt.UTC)) <= utcnow()


def test_seed_demo_prints_the_login_on_the_port_the_console_is_served_on(runner):
    """``make run PORT=5050`` served on 5050 and printed a login on 5000."""
    result = runner.invoke(args=["seed", "demo", "--customers", "5", "--port", "5050"])
    assert result.exit_code == 0 and "http://127.0.0.1:5050/login" in result.output


def test_seed_demo_twice_keeps_data_and_prints_a_fresh_login(runner):
    runner.invoke(args=["seed", "demo", "--customers", "10"])
    count = db.session.scalar(sa.select(sa.func.count()).select_from(Profile))
    result = runner.invoke(args=["seed", "demo", "--customers", "10"])
    assert result.exit_code == 0 and "already exists" in result.output
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Profile)) == count


def test_a_seeded_customer_stays_one_person_when_a_new_signal_of_theirs_arrives(runner):
    """The demo's customers are linked as their checkouts would link them: a new identifier seen
    with one of them joins that customer instead of splitting them into a profile per identifier."""
    from app.models import Identifier
    from app.models.base import utcnow
    from app.services.identifiers import Ident
    from app.services.resolution import resolve

    runner.invoke(args=["seed", "demo", "--customers", "12"])
    shop = db.session.scalar(sa.select(Shop).where(Shop.domain == "demo.myshopify.com"))
    seeded = db.session.scalars(
        sa.select(Identifier).where(Identifier.source == "seed", Identifier.kind == "email")
    ).first()
    owner = db.session.get(Profile, seeded.profile_id)
    held_before = db.session.scalar(
        sa.select(sa.func.count()).select_from(Identifier).where(Identifier.profile_id == owner.id)
    )
    profiles_before = db.session.scalar(sa.select(sa.func.count()).select_from(Profile))
    landed = resolve(
        shop, [Ident("email", seeded.value), Ident("ebay_user", "ebay-42")], source="api", seen_at=utcnow()
    )
    db.session.commit()
    assert landed.id == owner.id
    held_after = db.session.scalar(
        sa.select(sa.func.count()).select_from(Identifier).where(Identifier.profile_id == owner.id)
    )
    assert held_after == held_before + 1
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Profile)) == profiles_before


def test_every_command_group_says_what_it_is_for(runner):
    """``c360 --help`` listed ``messages`` with no line at all."""
    listing = runner.invoke(args=["--help"]).output
    commands = listing.split("Commands:", 1)[1].splitlines()
    described = {line.split()[0]: line.split(None, 1)[1:] for line in commands if line.strip()}
    assert all(described.values()), [name for name, text in described.items() if not text]


def test_a_plan_change_that_changes_the_lifecycle_windows_restages_every_customer(runner, drain):
    """Down to Starter, custom windows of 14/60 days fall back to 30/90: a buyer quiet for 20 days
    stayed "at risk" until the nightly run."""
    from app.services.shop_settings import update_settings
    from tests.enrichment_helpers import add_order, add_profile
    from tests.helpers import make_shop

    shop = make_shop("windows.myshopify.com", plan="pro")
    update_settings(shop.model, {"lifecycle": {"at_risk_days": 14, "churned_days": 60}})
    now = utcnow()
    buyer = add_profile(shop.id, seen_days_ago=20, now=now)
    add_order(buyer, now - dt.timedelta(days=20))
    buyer.lifecycle_stage = "at_risk"
    db.session.commit()
    result = runner.invoke(args=["shop", "update", "--domain", shop.domain, "--plan", "starter"])
    assert result.exit_code == 0, result.output
    drain()
    db.session.expire_all()
    assert db.session.get(Profile, buyer.id).lifecycle_stage == "converted"


def test_embedded_mode_serves_from_one_process_and_redis_from_two():
    """Without Redis the pixel's rate limit is counted in each process: two let a client send
    twice the limit, and which request was refused depended on the process that took it."""
    from app.cli import web_processes

    assert web_processes({"REDIS_URL": None}) == 1
    assert web_processes({"REDIS_URL": "redis://127.0.0.1:6379/0"}) == 2
