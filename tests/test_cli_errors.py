"""``c360`` on a database or Redis that is not there: one clear line on stderr, never a traceback."""

from __future__ import annotations

import tempfile
import uuid

import pytest
import sqlalchemy as sa

from app import create_app
from app.cli import build_cli
from app.extensions import db
from app.models import WebhookDelivery
from app.services.ingest.inbox import store_delivery
from tests.conftest import database_url
from tests.helpers import make_shop


@pytest.fixture()
def app_on():
    """Apps of their own: ``app_on(url, redis_url)``; a url of None is a fresh, unmigrated database."""
    made, drops = [], []

    def make(url: str | None = None, redis_url: str | None = None):
        if url is None:
            url, drop = database_url(tempfile.mkdtemp(), f"c360_cli_{uuid.uuid4().hex[:8]}")
            drops.append(drop)
        config = {"TESTING": True, "SECRET_KEY": "t", "SQLALCHEMY_DATABASE_URI": url, "REDIS_URL": redis_url}
        made.append(create_app(config))
        return made[-1]

    yield make
    for app in made:
        with app.app_context():
            db.session.remove()
            db.engine.dispose()
    for drop in drops:
        drop()


def c360(app, *args):
    """Run ``c360 ARGS`` (the console script's own group) against ``app``."""
    return app.test_cli_runner().invoke(build_cli(), list(args))


def _one_line(result) -> str:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.mark.parametrize(
    "args", [("shop", "create", "--domain", "x.myshopify.com"), ("seed", "demo"), ("dlq", "list")]
)
def test_a_command_on_an_unmigrated_database_says_to_run_db_upgrade(app_on, args):
    line = _one_line(c360(app_on(), *args))
    assert line == "Error: the database has no tables yet: run `c360 db upgrade`"


def test_db_upgrade_still_migrates_an_empty_database(app_on):
    app = app_on()
    assert c360(app, "db", "upgrade").exit_code == 0
    result = c360(app, "shop", "create", "--domain", "x.myshopify.com")
    assert result.exit_code == 0 and result.stdout.strip().isdigit(), result.output


def test_a_sqlite_file_in_a_missing_directory_is_named_in_one_line(app_on, tmp_path):
    missing = tmp_path / "nowhere" / "fresh.sqlite"
    line = _one_line(c360(app_on(f"sqlite:///{missing}"), "dlq", "list"))
    assert line.startswith(f"Error: cannot reach the database at {missing}: unable to open database file")
    assert "does not exist" in line


def test_an_unreachable_postgresql_is_named_by_host_and_port_without_its_password(app_on):
    app = app_on("postgresql+psycopg://dbuser:s3cret-pw@127.0.0.1:1/c360")
    for args in (("shop", "create", "--domain", "x.myshopify.com"), ("db", "upgrade")):
        line = _one_line(c360(app, *args))
        assert line.startswith("Error: cannot reach the database at 127.0.0.1:1/c360: ")
        assert "s3cret-pw" not in line and "dbuser" not in line


def test_an_unreachable_redis_is_named_in_one_line_without_its_password(app, db, app_on):
    shop = make_shop()
    store_delivery(shop.model, "pixel", "page_viewed", "evt-1", {"id": "evt-1"})
    db.session.execute(sa.update(WebhookDelivery).values(status="dead"))
    db.session.commit()
    broken = app_on(app.config["SQLALCHEMY_DATABASE_URI"], "redis://:r3dis-pw@127.0.0.1:1/0")
    dead = db.session.scalar(sa.select(WebhookDelivery.id))
    for args in (("dlq", "retry", "--all"), ("dlq", "retry", str(dead))):
        line = _one_line(c360(broken, *args))
        assert line.startswith("Error: cannot reach Redis at 127.0.0.1:1/0: ") and "r3dis-pw" not in line
        # Said before any row changed: it had set every dead row pending again first.
        db.session.expire_all()
        assert db.session.get(WebhookDelivery, dead).status == "dead"


def test_any_other_failure_keeps_its_traceback(app_on, monkeypatch):
    """Only the three infrastructure failures are explained: a bug is still reported as one."""
    from app.services import accounts

    def broken(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(accounts, "create_shop", broken)
    app = app_on()
    c360(app, "db", "upgrade")
    result = c360(app, "shop", "create", "--domain", "x.myshopify.com")
    assert result.exit_code == 1 and isinstance(result.exception, RuntimeError)


def test_a_setting_the_app_cannot_start_with_is_one_line_not_a_traceback(tmp_path):
    """``C360_ENV=production`` without ``SECRET_KEY`` printed a 33-line traceback."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    c360 = Path(sys.executable).with_name("c360")
    env = {k: v for k, v in os.environ.items() if k not in ("SECRET_KEY", "DATABASE_URL", "REDIS_URL")}
    env.update(C360_ENV="production", C360_INSTANCE_PATH=str(tmp_path))
    done = subprocess.run([str(c360), "dlq", "list"], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.strip() == "Error: SECRET_KEY must be set when C360_ENV=production"
