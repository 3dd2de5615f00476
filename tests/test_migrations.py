"""The migrations: the models match them, and data migrations carry existing rows forward."""

from __future__ import annotations

import tempfile
import uuid
from types import SimpleNamespace

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask_migrate import downgrade, upgrade

from app import create_app
from app.extensions import db
from app.models.base import utcnow
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


# Columns added since the revisions these tests write at: the rows they write leave them out.
LATER = {"profiles": {"details_at"}, "messages": {"content", "retry_of_id"}}


def _old_row(model, **values) -> SimpleNamespace:
    """A row as an older schema held it: only the columns it had (later ones are nullable, left out)."""
    table = model.__table__
    row = {
        c.name: c.default.arg if c.default is not None and not callable(c.default.arg) else None
        for c in table.columns
        if c.name not in LATER.get(table.name, set()) and c.name != "id"
    }
    row.update({name: utcnow() for name in ("created_at", "updated_at") if name in row})
    row.update(values)
    columns = sa.table(table.name, *(sa.column(name, table.c[name].type) for name in row))
    db.session.execute(sa.insert(columns).values(row))
    return SimpleNamespace(id=db.session.scalar(sa.text(f"SELECT max(id) FROM {table.name}")), **values)


def _old_profile(shop_id: int) -> SimpleNamespace:
    from app.models import Profile

    return _old_row(Profile, shop_id=shop_id)


def _rows(sql: str) -> list[tuple]:
    return [tuple(r) for r in db.session.execute(sa.text(sql)).all()]


def test_sends_move_to_the_message_log_and_reported_sends_keep_their_count(blank_app):
    from app.models import EngagementCounter, Event, Message
    from app.services import accounts

    with blank_app.app_context():
        upgrade(revision=BEFORE_SENDS_MOVED)  # the ORM writes these tables' rows as they were then
        shop = accounts.create_shop("m.myshopify.com", secret="s", plan="free", country="GB")  # noqa: S106
        profile = _old_profile(shop.id)
        sent = _old_row(
            Message, shop_id=shop.id, profile_id=profile.id, channel="email", source="campaign", status="sent"
        )
        db.session.flush()
        at = utcnow()
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


BEFORE_OUTBOX_KEYED = "9d3b6f1a2c47"


def test_outbox_items_keep_their_message_through_rekeying_and_back(blank_app):
    from app.models import Message
    from app.services import accounts

    insert_item = (
        "INSERT INTO outbox (shop_id, message_id, channel, transport, recipient, payload, created_at) "
        "VALUES (:shop, :message, 'email', 'outbox', 'a@b.test', '{}', CURRENT_TIMESTAMP)"
    )
    with blank_app.app_context():
        upgrade(revision=BEFORE_OUTBOX_KEYED)
        shop = accounts.create_shop("k.myshopify.com", secret="s", plan="free", country="GB")  # noqa: S106
        profile = _old_profile(shop.id)
        messages = [
            _old_row(
                Message,
                shop_id=shop.id,
                profile_id=profile.id,
                channel="email",
                source="manual",
                status="sent",
            )
            for _ in range(2)
        ]
        db.session.flush()
        for message in messages:
            db.session.execute(sa.text(insert_item), {"shop": shop.id, "message": message.id})
        db.session.commit()
        upgrade()
        keyed = _rows("SELECT shop_id, message_id FROM outbox ORDER BY message_id")
        assert keyed == [(shop.id, m.id) for m in messages]
        db.session.commit()
        downgrade(revision=BEFORE_OUTBOX_KEYED)
        numbered = _rows("SELECT id, message_id FROM outbox ORDER BY id")
        assert [m for _, m in numbered] == [m.id for m in messages]
        assert len({i for i, _ in numbered}) == 2
        # The old code inserted items without an id: the column numbers them again.
        third = _old_row(
            Message, shop_id=shop.id, profile_id=profile.id, channel="email", source="manual", status="sent"
        )
        db.session.flush()
        db.session.execute(sa.text(insert_item), {"shop": shop.id, "message": third.id})
        assert len(_rows("SELECT DISTINCT id FROM outbox")) == 3
        db.session.commit()


BEFORE_RETRIED = "a8d3e6f1b259"


def test_waiting_messages_whose_retry_was_made_become_retried_and_the_rest_still_wait(blank_app):
    from app.models import Message
    from app.services import accounts

    with blank_app.app_context():
        upgrade(revision=BEFORE_RETRIED)
        shop = accounts.create_shop("r.myshopify.com", secret="s", plan="free", country="GB")  # noqa: S106
        profile = _old_profile(shop.id)
        kept = {"shop_id": shop.id, "profile_id": profile.id, "channel": "sms", "source": "journey"}
        retried = _old_row(Message, **kept, status="waiting")
        still = _old_row(Message, **kept, status="waiting")
        attempt = _old_row(Message, **kept, status="sent", retry_of_id=retried.id)
        db.session.commit()
        upgrade()
        statuses = _rows("SELECT id, status FROM messages ORDER BY id")
        assert statuses == [(retried.id, "retried"), (still.id, "waiting"), (attempt.id, "sent")]
        db.session.commit()
        downgrade(revision=BEFORE_RETRIED)
        assert [s for _, s in _rows("SELECT id, status FROM messages ORDER BY id")] == [
            "waiting",
            "waiting",
            "sent",
        ]
        db.session.commit()


def test_stored_search_texts_lose_their_accents_so_an_agent_typing_zoe_finds_zoe(blank_app):
    from app.models import Profile
    from app.services import accounts

    with blank_app.app_context():
        upgrade(revision="d4a8e1f7c2b6")
        shop = accounts.create_shop("f.myshopify.com", secret="s", plan="free", country="GB")  # noqa: S106
        accented = _old_row(Profile, shop_id=shop.id, search_text="zoë groß zoe@example.net")
        plain = _old_profile(shop.id)
        db.session.commit()
        upgrade()
        assert _rows(
            f"SELECT search_text FROM profiles WHERE id IN ({accented.id}, {plain.id}) ORDER BY id"
        ) == [
            ("zoe gross zoe@example.net",),
            (None,),
        ]
