"""Nothing accepted is lost: retries with backoff, the dead-letter queue, the sweeper, DLQ tools."""

from __future__ import annotations

import datetime as dt
import json

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import OperationalError

from app.extensions import db
from app.models import Event, WebhookDelivery
from app.models.base import utcnow
from app.services.ingest import pixel
from app.services.ingest.inbox import store_delivery
from tests.helpers import make_shop
from tests.ingest_support import (
    SIGNALS,
    fixture,
    flaky_fixture,
    ishop_fixture,
    post_pixel,
    post_shopify,
    whatsapp_post,
)
from workers.ingest import process_delivery, sweep_deliveries

ishop = ishop_fixture
flaky = flaky_fixture
LATER = dt.timedelta(days=1)


def delivery() -> WebhookDelivery:
    db.session.expire_all()
    return db.session.scalar(sa.select(WebhookDelivery).order_by(WebhookDelivery.id.desc()))


def events() -> int:
    """Events made of what was sent (a derived stage change is not one)."""
    return db.session.scalar(sa.select(sa.func.count()).select_from(Event).where(SIGNALS))


def sweep(drain, **kw):
    """A day later: every retry has come due (its time set back to now, as the claims read the clock)."""
    db.session.execute(
        sa.update(WebhookDelivery)
        .where(WebhookDelivery.next_attempt_at.is_not(None))
        .values(next_attempt_at=utcnow() - dt.timedelta(seconds=1))
    )
    db.session.commit()
    sweep_deliveries(now=utcnow() + LATER, **kw)
    drain()


def test_transient_failure_is_retried_with_backoff_and_then_succeeds(client, ishop, drain, flaky):
    flaky["failures"] = 2
    assert post_pixel(client, fixture("pixel/page_viewed.json")).status_code == 200
    drain()
    row = delivery()
    assert (row.status, row.attempts) == ("failed", 1)
    assert "OperationalError" in row.last_error and events() == 0
    first_delay = row.next_attempt_at - utcnow()
    sweep(drain)
    row = delivery()
    assert (row.status, row.attempts) == ("failed", 2)
    assert row.next_attempt_at - utcnow() > first_delay * 1.5  # exponential
    sweep(drain)
    assert (delivery().status, delivery().attempts, delivery().last_error) == ("processed", 3, None)
    assert events() == 1


def test_a_retry_that_is_not_due_yet_is_left_alone(client, ishop, drain, flaky):
    post_pixel(client, fixture("pixel/page_viewed.json"))
    drain()
    assert sweep_deliveries() == 0
    assert delivery().status == "failed"


def test_a_retry_job_that_comes_before_its_time_leaves_the_delivery_alone(client, ishop, drain, flaky):
    """A second worker's redo, a job left from before a ``dlq retry``, or the sweeper's own job
    retried a failed delivery at once: five attempts in 25 seconds instead of the backoff's minutes."""
    flaky["failures"] = 3
    post_pixel(client, fixture("pixel/page_viewed.json"))
    drain()
    row = delivery()
    assert (row.status, row.attempts) == ("failed", 1)
    assert process_delivery(row.id) == "failed"  # what an early job runs
    assert (delivery().status, delivery().attempts) == ("failed", 1)
    sweep(drain)  # once due, it is worked
    assert delivery().attempts == 2


def test_always_failing_delivery_is_dead_lettered_then_retried_from_the_cli(
    app, client, runner, ishop, drain, flaky
):
    flaky["failures"] = 10**6
    post_pixel(client, fixture("pixel/page_viewed.json"))
    drain()
    for _ in range(app.config.get("C360_INGEST_MAX_ATTEMPTS", 5) - 1):
        sweep(drain)
    row = delivery()
    assert (row.status, row.attempts, row.next_attempt_at) == ("dead", 5, None)
    assert sweep_deliveries(now=utcnow() + LATER) == 0  # the sweeper leaves the dead alone
    listed = runner.invoke(args=["dlq", "list"])
    assert listed.exit_code == 0 and f"{row.id:>8}" in listed.output and "OperationalError" in listed.output
    flaky["failures"] = 0  # "fixed"
    result = runner.invoke(args=["dlq", "retry", str(row.id)])
    assert result.exit_code == 0, result.output
    drain()
    assert delivery().status == "processed" and events() == 1
    assert "empty" in runner.invoke(args=["dlq", "list"]).output
    again = runner.invoke(args=["dlq", "retry", str(row.id)])
    assert again.exit_code != 0 and "not in the dead-letter queue" in again.output


def test_dlq_retry_of_an_id_no_delivery_can_have_says_so_in_one_line(runner, ishop):
    """A number past BIGINT printed PostgreSQL's traceback; 0 was taken for no ID at all."""
    for number in ("999999999999999999999", "0"):
        result = runner.invoke(args=["dlq", "retry", number])
        assert result.exit_code != 0 and "Traceback" not in result.output, number
        assert f"delivery {number} is not in the dead-letter queue" in result.output, number


def test_dlq_retry_all_requeues_every_dead_delivery(client, runner, ishop, drain, flaky):
    flaky["failures"] = 10**6
    batch = fixture("pixel/batch.json")
    post_pixel(client, batch)
    drain()
    for row in db.session.scalars(sa.select(WebhookDelivery)):
        row.status = "dead"
    db.session.commit()
    flaky["failures"] = 0
    assert runner.invoke(args=["dlq", "retry"]).exit_code != 0  # neither ID nor --all
    result = runner.invoke(args=["dlq", "retry", "--all"])
    # Run at once in embedded mode; queued for a worker under RQ.
    assert "2 deliveries processed." in result.output or "2 deliveries queued again" in result.output
    drain()
    assert events() == 2


def test_killing_the_worker_between_commit_and_enqueue_loses_nothing(client, ishop, drain):
    event = fixture("pixel/page_viewed.json")
    store_delivery(ishop.model, "pixel", event["name"], event["id"], event)
    db.session.commit()  # committed, never enqueued: the process died here
    assert delivery().status == "pending"
    assert sweep_deliveries() == 0  # too fresh: its own job may still be on the way
    sweep(drain, stale_after_seconds=0)
    assert delivery().status == "processed" and events() == 1


def test_a_delivery_left_processing_by_a_dead_worker_is_picked_up(client, ishop, drain):
    event = fixture("pixel/page_viewed.json")
    store_delivery(ishop.model, "pixel", event["name"], event["id"], event)
    row = delivery()
    row.status, row.next_attempt_at = "processing", utcnow()
    db.session.commit()
    sweep(drain)
    assert delivery().status == "processed"


def test_the_job_is_idempotent(client, ishop, drain):
    post_pixel(client, fixture("pixel/page_viewed.json"))
    drain()
    row = delivery()
    assert process_delivery(row.id) == "processed"
    assert process_delivery(row.id) == "processed"
    assert process_delivery(10**9) == "skipped"
    assert delivery().attempts == 1 and events() == 1


def test_a_well_formed_body_that_cannot_be_processed_is_dead_lettered_not_dropped(app, client, ishop, drain):
    body = {
        "type": "order.placed",
        "occurred_at": "2026-10-01T10:00:00Z",
        "channel": "marketplace",
        "identifiers": {"amazon_buyer_id": "A1"},
        "properties": {"order_id": "X", "total": "10"},
    }
    store_delivery(ishop.model, "api", "order.placed", "bad-1", json.dumps(body).encode()[:-5])
    db.session.commit()
    sweep(drain, stale_after_seconds=0)
    row = delivery()
    # It would fail the same way every time: dead-lettered at the first attempt, with the reason.
    assert row.status == "dead" and row.attempts == 1 and "not valid JSON" in row.last_error


def test_a_value_our_code_cannot_handle_is_dead_lettered_at_once_with_its_reason(
    client, ishop, drain, monkeypatch
):
    def broken(*_args):
        raise ValueError("Invalid IPv6 URL")

    monkeypatch.setattr(pixel, "plan_pixel_event", broken)
    monkeypatch.setattr(pixel, "apply_pixel_event", broken)
    assert post_pixel(client, fixture("pixel/page_viewed.json")).status_code == 200
    drain()
    row = delivery()
    assert (row.status, row.attempts) == ("dead", 1) and "ValueError: Invalid IPv6 URL" in row.last_error


def test_failed_deliveries_page_lists_and_retries_with_htmx(client, auth, ishop, drain, flaky):
    flaky["failures"] = 10**6
    post_pixel(client, fixture("pixel/page_viewed.json"))
    drain()
    row = delivery()
    row.status = "dead"
    db.session.commit()
    auth.login_as(ishop)
    page = client.get("/deliveries/")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "Failed deliveries" in html and "OperationalError" in html and "page_viewed" in html
    assert f"/deliveries/{row.id}/retry" in html
    fragment = client.get("/deliveries/", headers={"HX-Request": "true"}).get_data(as_text=True)
    assert "<html" not in fragment and "OperationalError" in fragment
    assert client.post(f"/deliveries/{row.id}/retry", csrf=False).status_code == 400
    flaky["failures"] = 0
    retried = client.post(f"/deliveries/{row.id}/retry", headers={"HX-Request": "true"})
    drain()
    said = retried.get_data(as_text=True)
    assert retried.status_code == 200 and (f"Delivery {row.id} processed." in said or "queued again" in said)
    assert delivery().status == "processed"


def test_another_shops_delivery_cannot_be_retried_from_this_console(client, auth, ishop):
    other = make_shop("bravo.myshopify.com")
    event = fixture("pixel/page_viewed.json")
    stored = store_delivery(other.model, "pixel", "page_viewed", event["id"], event)
    row = db.session.get(WebhookDelivery, stored.delivery_id)
    row.status = "dead"
    db.session.commit()
    auth.login_as(ishop)
    assert client.post(f"/deliveries/{row.id}/retry").status_code == 404
    assert f"/deliveries/{row.id}/retry" not in client.get("/deliveries/").get_data(as_text=True)
    assert delivery().status == "dead"


def test_one_failing_event_in_a_batch_does_not_hold_back_the_others(client, ishop, drain, flaky):
    flaky["failures"] = 2  # the optimistic batch fails, then the first event again under its savepoint
    assert post_pixel(client, fixture("pixel/batch.json")).get_json()["accepted"] == 2
    drain()
    statuses = sorted(db.session.scalars(sa.select(WebhookDelivery.status)))
    assert statuses == ["failed", "processed"] and events() == 1
    sweep(drain)
    assert set(db.session.scalars(sa.select(WebhookDelivery.status))) == {"processed"} and events() == 2


def test_a_failure_at_commit_is_still_counted_and_retried(client, ishop, drain, monkeypatch):
    from workers import ingest as worker

    event = fixture("pixel/page_viewed.json")
    stored = store_delivery(ishop.model, "pixel", event["name"], event["id"], event)
    db.session.commit()
    real_commit, calls = db.session.commit, {"n": 0}

    def broken_commit():
        calls["n"] += 1
        if calls["n"] == 1:
            raise OperationalError("COMMIT", {}, Exception("server closed the connection"))
        return real_commit()

    monkeypatch.setattr(db.session, "commit", broken_commit)
    assert worker.process_delivery(stored.delivery_id) == "failed"
    monkeypatch.undo()
    row = delivery()
    assert (row.status, row.attempts) == ("failed", 1) and "server closed" in row.last_error
    assert events() == 0


def test_the_embedded_sweeper_works_a_stale_row_and_a_due_retry_with_no_traffic(
    app, ishop, monkeypatch, tmp_path
):
    """Embedded mode (jobs in-process, no RQ scheduler): the server's sweep thread does the minute sweep."""
    from app.jobs import InProcessQueue
    from workers import embedded

    monkeypatch.setitem(app.extensions, "rq", InProcessQueue())
    monkeypatch.setattr(app, "testing", False)
    event = fixture("pixel/page_viewed.json")
    store_delivery(ishop.model, "pixel", event["name"], "stale-1", event)
    retry = fixture("pixel/page_viewed.json")
    retry["id"] = "retry-1"
    store_delivery(ishop.model, "pixel", retry["name"], "retry-1", retry)
    rows = db.session.scalars(sa.select(WebhookDelivery).order_by(WebhookDelivery.id)).all()
    rows[0].received_at = utcnow() - dt.timedelta(minutes=5)
    rows[1].status, rows[1].attempts = "failed", 1
    rows[1].next_attempt_at = utcnow() - dt.timedelta(seconds=1)
    db.session.commit()
    assert embedded.wanted(app)
    sweeper = embedded.Sweeper(app, interval=0.05, lock_path=tmp_path / "sweeper.lock")
    sweeper.start()
    try:
        for _ in range(200):  # up to 10 s for the first sweep
            if sweeper.sweeps:
                break
            sweeper.stopped.wait(0.05)
    finally:
        sweeper.stop()
    db.session.expire_all()
    assert set(db.session.scalars(sa.select(WebhookDelivery.status))) == {"processed"} and events() == 2


def test_one_process_holds_the_sweepers_lock_and_another_takes_it_when_freed(app, tmp_path):
    from workers import embedded

    first = embedded.Sweeper(app, lock_path=tmp_path / "sweeper.lock")
    second = embedded.Sweeper(app, lock_path=tmp_path / "sweeper.lock")
    assert first.hold_lock() and not second.hold_lock()
    first.stop()
    assert second.hold_lock()
    second.stop()


def test_no_sweep_thread_with_rq_or_in_tests(app):
    from workers import embedded

    assert embedded.start(app) is None  # a test run (and, with REDIS_URL, the workers' schedule)


def test_an_embedded_request_answers_after_a_batch_and_leaves_the_backlog_to_later_work(
    app, client, ishop, monkeypatch
):
    """Embedded mode drains the inbox in the request that filled it: with a backlog (a burst, a
    replay after downtime) the provider still gets its answer quickly; the rest is worked later."""
    from app.jobs import InProcessQueue
    from workers.ingest import drain_shop

    monkeypatch.setitem(app.extensions, "rq", InProcessQueue())
    monkeypatch.setitem(app.config, "C360_INGEST_BATCH", 10)
    monkeypatch.setitem(app.config, "C360_INGEST_REQUEST_SECONDS", 0)
    for n in range(25):
        event = fixture("pixel/page_viewed.json")
        event["id"] = f"backlog-{n}"
        store_delivery(ishop.model, "pixel", event["name"], event["id"], event)
    db.session.commit()
    fresh = fixture("pixel/page_viewed.json")
    fresh["id"] = "fresh-1"
    assert post_pixel(client, fresh).status_code == 200

    def pending() -> int:
        db.session.expire_all()
        return db.session.scalar(
            sa.select(sa.func.count()).select_from(WebhookDelivery).where(WebhookDelivery.status == "pending")
        )

    assert pending() == 16  # one batch of the oldest ten was worked before the answer
    drain_shop(ishop.id)  # the next request's drain, or the sweep thread's
    assert pending() == 0 and events() == 26


class _RedisAway:
    """A Redis connection whose every command fails, as when the server is down."""

    def pipeline(self):
        return self

    def incrby(self, *_args):
        return self

    def expire(self, *_args):
        return self

    def execute(self):
        from redis.exceptions import ConnectionError as RedisConnectionError

        raise RedisConnectionError("Connection refused")


def test_with_redis_away_a_delivery_is_stored_answered_200_and_left_to_the_sweeper(
    app, client, ishop, monkeypatch
):
    """Committed is accepted: a 500 after the commit made providers resend what we held."""
    from redis.exceptions import ConnectionError as RedisConnectionError

    import workers.ingest

    def refuse(_shop_ids):
        raise RedisConnectionError("Connection refused")

    monkeypatch.setattr(workers.ingest, "enqueue_deliveries", refuse)
    monkeypatch.setattr(
        app.extensions["rq"], "connection", _RedisAway(), raising=False
    )  # the pixel's rate limit counts in-process instead of failing the visit
    event = fixture("pixel/page_viewed.json")
    event["id"] = "redis-away-1"
    answer = post_pixel(client, event)
    assert answer.status_code == 200 and answer.get_json()["accepted"] == 1
    assert delivery().status == "pending"  # the sweeper's to queue


def test_the_minute_sweep_is_scheduled_again_even_when_a_sweep_fails(app, monkeypatch):
    import workers.ingest

    scheduled = []

    def broken():
        raise OperationalError("SELECT", {}, Exception("connection refused"))

    monkeypatch.setattr(workers.ingest, "sweep_once", broken)
    monkeypatch.setattr(workers.ingest, "schedule_sweep", lambda: scheduled.append(1))
    with pytest.raises(OperationalError):
        workers.ingest.sweep_job()
    assert scheduled == [1]


def test_a_workers_maintenance_schedules_the_minute_sweep_if_its_chain_broke(app, monkeypatch):
    import logging

    from rq import SimpleWorker

    import workers.ingest
    from workers.runner import IngestWorker

    scheduled = []
    monkeypatch.setattr(SimpleWorker, "run_maintenance_tasks", lambda self: None)
    monkeypatch.setattr(workers.ingest, "schedule_sweep", lambda: scheduled.append(1))
    worker = object.__new__(IngestWorker)
    worker.log = logging.getLogger("test")
    worker.run_maintenance_tasks()
    assert scheduled == [1]


def test_with_the_database_away_a_delivery_and_an_api_call_get_a_json_503_to_retry(
    client, ishop, monkeypatch
):
    """Nothing was stored, so never a 200; and a JSON answer with Retry-After, not Flask's HTML 500."""
    from app.blueprints.api import ingest as api_ingest
    from app.blueprints.webhooks import collect

    def away(*_args, **_kwargs):
        raise OperationalError("SELECT", {}, Exception("connection refused"))

    monkeypatch.setattr(collect, "store_deliveries", away)
    monkeypatch.setattr(api_ingest, "ingest_status", away)
    for answer in (
        post_pixel(client, fixture("pixel/page_viewed.json")),
        client.get("/api/v1/ingest/status", headers=ishop.auth),
    ):
        assert answer.status_code == 503 and answer.headers["Retry-After"] == "30"
        assert answer.get_json()["error"]["code"] == "unavailable"


def test_two_deliveries_whose_long_ids_share_their_first_255_characters_are_both_kept(client, ishop, drain):
    """Ids were cut to the column's 255 characters, so the second was answered as a duplicate
    of the first and never processed; the same long id twice is still one delivery."""
    stem = "L" * 255
    for n, suffix in enumerate(("-one", "-two", "-two")):
        order = fixture("shopify/orders_create_guest.json")
        order.update({"id": 93000 + min(n, 1), "email": f"long{min(n, 1)}@mail.uk"})
        assert post_shopify(client, ishop, "orders/create", order, stem + suffix).status_code == 200
    for n in (1, 2, 2):
        body = fixture("whatsapp/inbound_text.json")
        body["entry"][0]["changes"][0]["value"]["messages"][0]["id"] = f"wamid.{stem}{n}"
        assert whatsapp_post(client, ishop.domain, body).status_code == 200
    drain()
    rows = db.session.execute(
        sa.select(WebhookDelivery.provider, WebhookDelivery.external_id, WebhookDelivery.status)
    )
    kept = {(provider, external_id): status for provider, external_id, status in rows}
    assert sorted(p for p, _ in kept) == ["shopify", "shopify", "whatsapp", "whatsapp"]
    assert all(len(external_id) <= 255 for _, external_id in kept)
    assert set(kept.values()) == {"processed"}


class _FlagQueue:
    """A queue whose drain flags are watched (jobs are queued, not run)."""

    runs_inline = False

    def __init__(self):
        self.released: list[str] = []

    def release_once(self, key):
        self.released.append(key)

    def check_reachable(self):
        return None


def test_a_drain_that_fails_before_taking_the_shops_lock_clears_its_flag(app, ishop, monkeypatch):
    """A drain whose database went away while it waited for the shop's lock kept its "queued" flag:
    every request's drain and the sweeper's were skipped until it expired a minute later."""
    import workers.ingest as ingest

    queue = _FlagQueue()
    monkeypatch.setitem(app.extensions, "rq", queue)

    def database_away(claim):
        raise OperationalError("SELECT pg_advisory_xact_lock", {}, Exception("server closed the connection"))

    monkeypatch.setattr(ingest, "_run", database_away)
    with pytest.raises(OperationalError):
        ingest.drain_shop(ishop.id)
    assert queue.released == [ingest.drain_key(ishop.id)]
