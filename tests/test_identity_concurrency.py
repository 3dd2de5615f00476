"""Who is who changes in one place at a time, and writers follow a merge made while they waited.

The console's merge moves the loser's identifiers, events, consent and counters to the
survivor. A drain batch that read the loser as live before that merge committed stored
its events (and stamps) on the merged-away profile after it, where nobody looks; an
unsubscribe or a send that waited on the merge's row lock wrote to the merged-away
profile too. Each test holds a console change open while the other writer starts.
PostgreSQL only: SQLite has one writer at a time.
"""

from __future__ import annotations

import datetime as dt
import threading
import time

import pytest
import sqlalchemy as sa

from app.errors import Conflict
from app.models import ConsentRecord, Event, Identifier, Merge, MergeCandidate, Message, Profile, Shop
from app.models.base import utcnow
from app.services import consent, merge_candidates, merges, shop_lock
from app.services.identifiers import Ident
from app.services.ingest.inbox import store_deliveries
from app.services.messaging import send_message
from app.services.messaging_bulk import send_many
from app.services.profile_timezone import set_profile_timezone
from app.services.resolution import resolve
from tests.gate_helpers import NOON, make_profile
from tests.helpers import statements
from tests.ingest_support import fixture
from workers.ingest import drain_shop

T0 = dt.datetime(2026, 10, 1, 8, tzinfo=dt.UTC)
BLOCKED_FOR = 1.0  # seconds the batch is given to run ahead while the console holds its change open


@pytest.fixture()
def pg(db):
    if db.engine.dialect.name != "postgresql":
        pytest.skip("concurrent writers: PostgreSQL only")
    return db


def _profiles(shop_id: int, db) -> tuple[int, int]:
    """A cookie's profile and an email's, never seen together; ``(email's, cookie's)``."""
    shop = db.session.get(Shop, shop_id)
    cookie = resolve(shop, [Ident("web_client", "c-race")], source="pixel", seen_at=T0)
    email = resolve(shop, [Ident("email", "race@shopper.test")], source="api", seen_at=T0)
    db.session.commit()
    return email.id, cookie.id


def _queue_page_view(shop_id: int, db, event_id: str) -> None:
    """A page view of the cookie, in the inbox and not yet processed."""
    body = fixture("pixel/page_viewed.json")
    body.update(id=event_id, clientId="c-race", timestamp="2026-10-02T09:00:00.000Z")
    store_deliveries(db.session.get(Shop, shop_id), "pixel", [(body["name"], event_id, body)])
    db.session.commit()


def _race(app, db, shop_id: int, change, then=None) -> None:
    """Run ``change`` in the console and hold its transaction open while ``then`` (by default a
    drain of the shop) starts on another connection; then let ``change`` commit."""
    changed, go, errors = threading.Event(), threading.Event(), []

    def console():
        try:
            with app.app_context():
                change(db.session.get(Shop, shop_id))
                changed.set()
                go.wait(30)
                db.session.commit()
        except BaseException as exc:  # surfaced below: a thread must not fail silently
            errors.append(exc)
            changed.set()

    def worker():
        try:
            with app.app_context():
                if then is None:
                    drain_shop(shop_id)
                else:
                    then(db.session.get(Shop, shop_id))
                    db.session.commit()
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=console), threading.Thread(target=worker)]
    threads[0].start()
    assert changed.wait(30)
    threads[1].start()
    threads[1].join(BLOCKED_FOR)
    go.set()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    db.session.expire_all()


def _during_a_merge(app, db, shop_id: int, survivor: int, loser: int, then=None) -> None:
    """``_race`` with a console merge of ``loser`` into ``survivor`` as the change held open."""
    _race(
        app,
        db,
        shop_id,
        lambda s: merges.merge_profiles(s, survivor, loser, reason="manual", actor="t"),
        then,
    )


def _subscriber_and_cookie(shop_id: int, db, email: str, cookie: str) -> tuple[int, int]:
    """A profile opted in to email, and a cookie's profile never seen with it: ``(email's, cookie's)``."""
    subscriber = make_profile(shop_id, email, None, consents=("email",)).id
    shop = db.session.get(Shop, shop_id)
    visitor = resolve(shop, [Ident("web_client", cookie)], source="pixel", seen_at=T0).id
    db.session.commit()
    return subscriber, visitor


def _event_owner(db, event_id: str) -> int:
    return db.session.scalar(sa.select(Event.profile_id).where(Event.external_id == event_id))


def test_an_event_drained_during_a_console_merge_lands_on_the_survivor(app, pg, shop):
    survivor, loser = _profiles(shop.id, pg)
    _queue_page_view(shop.id, pg, "px-race-merge")

    _during_a_merge(app, pg, shop.id, survivor, loser)

    assert pg.session.get(Profile, loser).merged_into_id == survivor
    assert _event_owner(pg, "px-race-merge") == survivor
    assert pg.session.get(Profile, loser).last_seen_at == T0  # no stamp written to the merged-away side
    assert pg.session.get(Profile, survivor).last_seen_at == dt.datetime(2026, 10, 2, 9, tzinfo=dt.UTC)


def test_an_event_drained_during_an_undo_lands_on_the_profile_owning_its_identifier(app, pg, shop):
    survivor, loser = _profiles(shop.id, pg)
    row = merges.merge_profiles(pg.session.get(Shop, shop.id), survivor, loser, reason="manual", actor="t")
    pg.session.commit()
    _queue_page_view(shop.id, pg, "px-race-undo")

    _race(app, pg, shop.id, lambda s: merges.undo(s, row.id, "t"))

    cookie_owner = pg.session.scalar(sa.select(Identifier.profile_id).where(Identifier.value == "c-race"))
    assert cookie_owner == loser
    assert _event_owner(pg, "px-race-undo") == loser


def test_an_event_drained_while_a_candidate_is_accepted_lands_on_the_survivor(app, pg, shop):
    survivor, loser = _profiles(shop.id, pg)
    a, b = sorted((survivor, loser))
    candidate = MergeCandidate(shop_id=shop.id, profile_a_id=a, profile_b_id=b, reason="shared_device")
    pg.session.add(candidate)
    pg.session.commit()
    _queue_page_view(shop.id, pg, "px-race-accept")

    _race(app, pg, shop.id, lambda s: merge_candidates.accept(s, candidate.id, "t"))

    assert _event_owner(pg, "px-race-accept") == survivor


def test_an_unsubscribe_made_during_a_merge_reaches_the_survivor(app, pg, shop):
    survivor, loser = _profiles(shop.id, pg)

    def unsubscribe_the_loser(s):
        consent.unsubscribe_all(pg.session.get(Profile, loser), source="console", captured_at=utcnow())

    _during_a_merge(app, pg, shop.id, survivor, loser, unsubscribe_the_loser)

    assert pg.session.get(Profile, survivor).globally_unsubscribed
    assert consent.channel_states(pg.session.get(Profile, survivor))["email"] == consent.OPTED_OUT
    owners = pg.session.scalars(sa.select(ConsentRecord.profile_id)).all()
    assert owners == [survivor]


def test_the_shop_lock_is_asked_for_once_per_transaction_and_again_after_it(pg, shop, other_shop):
    with statements() as sent:
        assert shop_lock.hold([shop.id])
        assert not shop_lock.hold([shop.id])  # held: nothing sent, nothing waited for
        assert shop_lock.hold([other_shop.id, shop.id])  # only the other shop is asked for
        pg.session.commit()
        assert shop_lock.hold([shop.id])  # a new transaction holds nothing yet
        with pg.session.begin_nested():
            assert shop_lock.hold([other_shop.id])  # a savepoint's lock may be rolled back...
            assert shop_lock.hold([other_shop.id])  # ...so it is asked for each time
        pg.session.rollback()
    assert sum("pg_advisory_xact_lock" in s for s in sent) == 5


def test_a_send_to_a_profile_merged_while_it_waited_goes_to_the_survivor(app, pg, shop):
    survivor, loser = _subscriber_and_cookie(shop.id, pg, "send-race@shopper.test", "c-send")

    def then(s):
        send_message(s, loser, "email", "journey", journey_id="welcome", now=NOON)

    _during_a_merge(app, pg, shop.id, survivor, loser, then)

    sent = pg.session.scalars(sa.select(Message)).all()
    assert [(m.profile_id, m.status) for m in sent] == [(survivor, "sent")]


def test_a_time_zone_set_during_a_merge_is_the_survivors(app, pg, shop):
    survivor, loser = _profiles(shop.id, pg)

    def then(s):
        set_profile_timezone(pg.session.get(Profile, loser), "America/New_York")

    _during_a_merge(app, pg, shop.id, survivor, loser, then)

    assert pg.session.get(Profile, survivor).timezone == "America/New_York"
    assert pg.session.get(Profile, loser).timezone is None


def test_two_undos_of_one_merge_at_once_undo_it_once(app, pg, shop):
    survivor, loser = _profiles(shop.id, pg)
    row = merges.merge_profiles(pg.session.get(Shop, shop.id), survivor, loser, reason="manual", actor="t")
    pg.session.commit()
    refused: list[Conflict] = []

    def undo_again(s):
        try:
            merges.undo(s, row.id, "second console")
        except Conflict as exc:
            refused.append(exc)

    _race(app, pg, shop.id, lambda s: merges.undo(s, row.id, "first console"), undo_again)

    assert len(refused) == 1 and "already undone" in refused[0].message
    assert pg.session.get(Profile, loser).merged_into_id is None
    owners = dict(pg.session.execute(sa.select(Identifier.value, Identifier.profile_id)).all())
    assert owners == {"c-race": loser, "race@shopper.test": survivor}


def test_a_campaign_chunk_leaves_out_a_profile_merged_while_it_waited(app, pg, shop):
    survivor, loser = _subscriber_and_cookie(shop.id, pg, "chunk-race@shopper.test", "c-chunk")
    bystander = make_profile(shop.id, "bystander@shopper.test", None, consents=("email",)).id

    def then(s):
        send_many(s, [loser, bystander], "email", campaign_id="spring", now=NOON)

    _during_a_merge(app, pg, shop.id, survivor, loser, then)

    sent = pg.session.execute(sa.select(Message.profile_id, Message.status)).all()
    assert sent == [(bystander, "sent")]  # the survivor is not in this audience; the loser is no one now


def test_a_savepoint_asks_for_no_shop_lock_its_transaction_holds(pg, shop):
    shop_lock.hold([shop.id])
    with statements() as sent, pg.session.begin_nested():
        assert not shop_lock.hold([shop.id])  # a row-by-row retry's resolution, on its savepoint
    assert not any("pg_advisory_xact_lock" in s for s in sent)
    pg.session.rollback()


def test_a_writer_following_a_merge_takes_its_locks_in_id_order_so_an_undo_cannot_deadlock_it(app, pg, shop):
    # The survivor is the older profile (the lower id); an undo locks both in id order, survivor first.
    survivor = make_profile(shop.id, "older@shopper.test", None).id
    loser = resolve(
        pg.session.get(Shop, shop.id), [Ident("web_client", "c-lock")], source="pixel", seen_at=T0
    ).id
    merges.merge_profiles(pg.session.get(Shop, shop.id), survivor, loser, reason="manual", actor="t")
    pg.session.commit()
    assert survivor < loser
    held, errors = threading.Event(), []

    def undo_locks():
        """An undo's two row locks, with the writer starting between them."""
        with app.app_context():
            try:
                for profile_id in (survivor, loser):
                    pg.session.execute(
                        sa.select(Profile.id).where(Profile.id == profile_id).with_for_update()
                    )
                    held.set()
                    time.sleep(BLOCKED_FOR)
                pg.session.commit()
            except BaseException as exc:  # surfaced below
                errors.append(exc)
                pg.session.rollback()

    undo = threading.Thread(target=undo_locks)
    undo.start()
    assert held.wait(30)
    consent.unsubscribe_all(pg.session.get(Profile, loser), source="console", captured_at=utcnow())
    pg.session.commit()
    undo.join(60)
    assert not errors, errors
    assert pg.session.get(Profile, survivor).globally_unsubscribed


def test_an_unsubscribe_of_a_known_customer_does_not_wait_for_an_import_holding_the_identity_lock(
    app, pg, shop
):
    # An install-time import holds the shop's identity lock for its whole first pass (minutes
    # for a large store): an unsubscribe naming a known customer must not wait behind it.
    from app.services import messaging_api

    make_profile(shop.id, "busy@shopper.test", None, consents=("email",))
    pg.session.commit()
    importer = pg.engine.connect()
    transaction = importer.begin()
    importer.execute(sa.select(sa.func.pg_advisory_xact_lock(shop_lock.NAMESPACE, shop.id)))
    answers, errors = [], []

    def unsubscribe():
        try:
            with app.app_context():
                s = pg.session.get(Shop, shop.id)
                answers.append(
                    messaging_api.unsubscribe_from_request(s, {"identifier": "email:busy@shopper.test"})
                )
                pg.session.commit()
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    thread = threading.Thread(target=unsubscribe)
    try:
        thread.start()
        thread.join(10)
        assert not thread.is_alive(), "the unsubscribe waited for the import's lock"
    finally:
        transaction.rollback()
        importer.close()
        thread.join(30)
    assert not errors, errors
    assert answers[0]["globally_unsubscribed"] is True


def test_two_console_merges_of_one_pair_at_once_make_one_merge_and_refuse_the_other(app, db, shop):
    """Both read the pair as two people before either wrote; the second must see the first's merge."""
    survivor, loser = _profiles(shop.id, db)
    refused = []

    def second(s):
        try:
            merges.merge_profiles(s, loser, survivor, reason="manual", actor="t2")
        except Conflict as exc:
            refused.append(str(exc))

    _during_a_merge(app, db, shop.id, survivor, loser, then=second)
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Merge)) == 1
    assert refused and "already merged" in refused[0]
