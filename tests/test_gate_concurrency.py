"""Check and reservation are one step: threads and processes hammering one profile never pass a cap."""

from __future__ import annotations

import multiprocessing
import threading

import pytest
import sqlalchemy as sa

from app.models import Event, Message, OutboxItem, Shop
from app.services.messaging import send_message
from app.services.messaging_bulk import send_many
from tests.concurrency_worker import hammer
from tests.gate_helpers import NOON, make_profile

THREADS, PROCESSES, ROUNDS = 6, 2, 3


def test_threads_and_processes_never_exceed_the_daily_cap(app, db, shop):
    profiles = [make_profile(shop.id, f"c{i}@shopper.test", None).id for i in range(3)]
    url = app.config["SQLALCHEMY_DATABASE_URI"]
    errors: list[BaseException] = []

    def thread_body():
        try:
            with app.app_context():
                model = db.session.get(Shop, shop.id)
                for _ in range(ROUNDS):
                    for pid in profiles:
                        send_message(model, pid, "email", "campaign", "storm", now=NOON)
        except BaseException as exc:  # surfaced below: a thread must not fail silently
            errors.append(exc)

    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(PROCESSES) as pool:
        pending = [
            pool.apply_async(hammer, (url, shop.id, profiles, ROUNDS, NOON.isoformat()))
            for _ in range(PROCESSES)
        ]
        threads = [threading.Thread(target=thread_body) for _ in range(THREADS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        [p.get(timeout=120) for p in pending]
    assert not errors, errors
    db.session.expire_all()
    rows = db.session.execute(
        sa.select(Message.profile_id, Message.status, sa.func.count()).group_by(
            Message.profile_id, Message.status
        )
    ).all()
    counts = {(pid, status): n for pid, status, n in rows}
    attempts = (THREADS + PROCESSES) * ROUNDS
    for pid in profiles:
        assert counts[(pid, "sent")] == 3  # the global daily cap, exactly
        assert counts[(pid, "blocked")] == attempts - 3


def test_bulk_and_single_sends_together_never_exceed_the_daily_cap(app, db, shop):
    profiles = [make_profile(shop.id, f"b{i}@shopper.test", None).id for i in range(5)]
    url = app.config["SQLALCHEMY_DATABASE_URI"]
    errors: list[BaseException] = []

    def bulk_body(i: int):
        try:
            with app.app_context():
                model = db.session.get(Shop, shop.id)
                for r in range(ROUNDS):
                    send_many(model, profiles, "email", campaign_id=f"bulk-{i}-{r}", now=NOON, chunk=2)
        except BaseException as exc:  # surfaced below: a thread must not fail silently
            errors.append(exc)

    def single_body():
        try:
            with app.app_context():
                model = db.session.get(Shop, shop.id)
                for _ in range(ROUNDS):
                    for pid in reversed(profiles):
                        send_message(model, pid, "email", "campaign", "storm", now=NOON)
        except BaseException as exc:
            errors.append(exc)

    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(1) as pool:
        pending = pool.apply_async(hammer, (url, shop.id, profiles, ROUNDS, NOON.isoformat()))
        threads = [threading.Thread(target=bulk_body, args=(i,)) for i in range(3)]
        threads += [threading.Thread(target=single_body) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        pending.get(timeout=120)
    assert not errors, errors
    db.session.expire_all()
    sent = dict(
        db.session.execute(
            sa.select(Message.profile_id, sa.func.count())
            .where(Message.status == "sent")
            .group_by(Message.profile_id)
        ).all()
    )
    assert sent == dict.fromkeys(profiles, 3)  # the global daily cap, exactly
    assert db.session.scalar(sa.select(sa.func.count()).select_from(OutboxItem)) == 3 * len(profiles)


def test_a_profile_locked_for_a_send_still_takes_new_events(db, shop):
    """The send's lock serialises senders only: ingest never waits on a campaign chunk."""
    if db.engine.dialect.name != "postgresql":
        pytest.skip("SQLite has one writer at a time by design")
    from app.services.profile_lock import lock_profiles

    profile = make_profile(shop.id)
    assert lock_profiles(shop.id, [profile.id]) == [profile.id]  # held until this session commits
    with db.engine.connect() as other:
        other.execute(sa.text("SET lock_timeout = '2s'"))
        other.execute(
            sa.insert(Event).values(
                shop_id=shop.id,
                profile_id=profile.id,
                type="page_viewed",
                source="pixel",
                external_id="while-locked",
                identifiers={},
                properties={},
                occurred_at=NOON,
                received_at=NOON,
            )
        )
        other.commit()
        # ...while a second sender to the same customer does wait.
        with pytest.raises(sa.exc.OperationalError, match="lock timeout"):
            other.execute(
                sa.text("SELECT id FROM profiles WHERE id = :id FOR NO KEY UPDATE"), {"id": profile.id}
            )
    db.session.rollback()
