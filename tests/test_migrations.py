"""The migrations: the models match them, and data migrations carry existing rows forward."""

from __future__ import annotations

import tempfile
import uuid

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask_migrate import downgrade, upgrade

from app import create_app
from app.extensions import db
from tests.conftest import database_url

BEFORE_SENDS_MOVED = "87f7a0ce90d2"


@pytest.fixture()
def blank_app():
    """An app on a database of its own, not yet migrated (SQLite, or PostgreSQL with ``DATABASE_URL``)."""
    name = f"c360_migrations_{uuid.uuid4().hex[:8]}"
    database, drop = database_url(tempfile.mkdtemp(prefix="c360-migrations-"), name)
    app = create_app(
        {"TESTING": True, "SECRET_KEY": "t", "SQLALCHEMY_DATABASE_URI": database, "REDIS_URL": None}
    )
    yield app
    with app.app_context():
        db.session.remove()
        db.engine.dispose()
    drop()


def test_the_migrated_schema_matches_the_models(blank_app):
    with blank_app.app_context():
        upgrade()
        with db.engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), db.metadata)
    assert diff == []


def _rows(sql: str) -> list[tuple]:
    return [tuple(r) for r in db.session.execute(sa.text(sql)).all()]


def test_sends_move_to_the_message_log_and_reported_sends_keep_their_count(blank_app):
    from app.models import EngagementCounter, Event, Message, Profile
    from app.services import accounts

    with blank_app.app_context():
        upgrade(revision=BEFORE_SENDS_MOVED)  # that schema is today's: the ORM can write its rows
        shop = accounts.create_shop("m.myshopify.com", secret="s", plan="free", country="GB")  # noqa: S106
        profile = Profile(shop_id=shop.id)
        db.session.add(profile)
        db.session.flush()
        sent = Message(
            shop_id=shop.id, profile_id=profile.id, channel="email", source="campaign", status="sent"
        )
        db.session.add(sent)
        db.session.flush()
        at = sent.created_at
        # The copies a send used to write, and a push send another system reported.
        for channel, source, ref in (("email", "c360", f"message-{sent.id}"), ("push", "api", "ext-1")):
            db.session.add_all(
                [
                    Event(
                        shop_id=shop.id,
                        profile_id=profile.id,
                        type=f"{channel}.sent",
                        channel=channel,
                        source=source,
                        external_id=ref,
                        occurred_at=at,
                    ),
                    EngagementCounter(
                        shop_id=shop.id,
                        profile_id=profile.id,
                        channel=channel,
                        metric="sent",
                        count=1,
                        last_at=at,
                    ),
                ]
            )
        db.session.commit()
        upgrade()  # also rebuilds profiles and messages on SQLite: no row may be lost on the way
        assert _rows("SELECT id, profile_id, status FROM messages") == [(sent.id, profile.id, "sent")]
        assert _rows("SELECT type, source FROM events") == [("push.sent", "api")]
        assert _rows("SELECT channel, metric, count FROM engagement_counters") == [("push", "sent", 1)]
        db.session.commit()
        downgrade(revision=BEFORE_SENDS_MOVED)
        assert sorted(_rows("SELECT type, source, external_id FROM events")) == [
            ("email.sent", "c360", f"message-{sent.id}"),
            ("push.sent", "api", "ext-1"),
        ]
        counters = sorted(_rows("SELECT channel, count FROM engagement_counters WHERE metric = 'sent'"))
        assert counters == [("email", 1), ("push", 1)]
        db.session.commit()
