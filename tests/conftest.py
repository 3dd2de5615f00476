"""Test fixtures in the flask tutorial's shape: app, client, runner, db.

One database per test run (a temporary SQLite file, or a fresh
PostgreSQL database created from ``DATABASE_URL`` and dropped at the end),
built by the real Alembic migrations. Every test starts from empty tables.
With ``REDIS_URL`` set, jobs go to RQ under a queue prefix unique to the
run and ``drain()`` works them with a burst ``SimpleWorker``.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa
from flask.testing import FlaskClient
from itsdangerous import URLSafeTimedSerializer

from app import create_app
from app.extensions import db as _db

RUN_ID = uuid.uuid4().hex[:10]
FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures"
if not FIXTURES.exists():  # CI clones the repo beside a copy of shared/
    FIXTURES = Path(os.environ.get("C360_FIXTURES", "../shared/fixtures")).resolve()


def database_url(tmp_dir: str, name: str = f"c360_test_{RUN_ID}") -> tuple[str, callable]:
    """Create a test database (this run's, unless named); return its URL and a function that drops it."""
    base = os.environ.get("DATABASE_URL")
    if not base:
        return f"sqlite:///{tmp_dir}/{name}.sqlite", lambda: None
    url = sa.engine.make_url(base.replace("postgresql://", "postgresql+psycopg://", 1))
    admin = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))

    def drop():
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return url.set(database=name).render_as_string(hide_password=False), drop


@pytest.fixture(scope="session")
def app():
    """One app and one migrated database for the whole run."""
    tmp = tempfile.mkdtemp(prefix="c360-test-")
    url, drop = database_url(tmp)
    os.environ["C360_INSTANCE_PATH"] = tmp
    application = create_app(
        {
            "TESTING": True,
            "SECRET_KEY": "test-secret",
            "SQLALCHEMY_DATABASE_URI": url,
            "C360_QUEUE_PREFIX": f"c360test-{RUN_ID}",
        }
    )
    from flask_migrate import upgrade

    with application.app_context():
        upgrade()
    yield application
    with application.app_context():
        _db.session.remove()
        _db.engine.dispose()
    drop()


def _truncate_all() -> None:
    tables = [t.name for t in reversed(_db.metadata.sorted_tables)]
    if _db.engine.dialect.name == "postgresql":
        _db.session.execute(sa.text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
    else:
        for name in tables:
            _db.session.execute(sa.text(f"DELETE FROM {name}"))
    _db.session.commit()


@pytest.fixture()
def db(app):
    """The database, empty, inside an app context."""
    with app.app_context():
        _truncate_all()
        yield _db
        _db.session.rollback()
        _db.session.remove()
    queue = app.extensions["rq"]
    if hasattr(queue, "queue_names"):
        for name in ("webhooks", "default", "analytics"):
            queue.queue(name).empty()
        # Ids restart with the tables: a flag or a finished job named after this test's rows
        # (``deliver-1``) must not hold back the next test's job of the same name.
        from app.jobs import safe_job_id

        for pattern in (f"{queue.prefix}:once:*", f"rq:job:{safe_job_id(queue.prefix)}-*"):
            for key in queue.connection.scan_iter(pattern):
                queue.connection.delete(key)


class CsrfClient(FlaskClient):
    """A test client that sends a valid CSRF token unless told ``csrf=False``."""

    def open(self, *args, csrf: bool = True, **kwargs):
        method = (kwargs.get("method") or "GET").upper()
        if csrf and method in {"POST", "PUT", "PATCH", "DELETE"}:
            raw = uuid.uuid4().hex
            with self.session_transaction() as session:
                session.setdefault("csrf_token", raw)
                raw = session["csrf_token"]
            token = URLSafeTimedSerializer(self.application.secret_key, salt="wtf-csrf-token").dumps(raw)
            headers = dict(kwargs.pop("headers", None) or {})
            headers.setdefault("X-CSRFToken", token)
            kwargs["headers"] = headers
        return super().open(*args, **kwargs)


@pytest.fixture()
def client(app, db):
    """A browser-like client with CSRF tokens."""
    app.test_client_class = CsrfClient
    return app.test_client()


@pytest.fixture()
def runner(app, db):
    """The CLI runner."""
    return app.test_cli_runner()


@pytest.fixture()
def drain(app):
    """Work every queued job (RQ burst worker); a no-op in embedded mode."""

    def _drain():
        queue = app.extensions["rq"]
        if not hasattr(queue, "queue_names"):
            return
        from rq import SimpleWorker

        worker = SimpleWorker(
            [queue.queue(n) for n in ("webhooks", "default", "analytics")], connection=queue.connection
        )
        worker.work(burst=True, logging_level="ERROR")

    return _drain


pytest_plugins = ["tests.helpers"]
