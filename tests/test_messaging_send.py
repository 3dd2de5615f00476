"""send_message: the reservation, the log row for every attempt, and what a block means by source."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from app.errors import NotFound, ValidationFailed
from app.models import EngagementCounter, Event, Message, OutboxItem
from app.services.engagement import apply_engagement
from app.services.messaging import retry_due, send_message
from app.services.profile_view import profile_document
from tests.gate_helpers import NOON, make_profile
from tests.helpers import make_shop


def count(db, model, *where):
    return db.session.scalar(sa.select(sa.func.count()).select_from(model).where(*where))


def test_third_message_of_the_day_is_sent_and_the_fourth_blocked(db, shop):
    profile = make_profile(shop.id)
    results = [send_message(shop.model, profile.id, "email", "campaign", "c1", now=NOON) for _ in range(4)]
    assert [m.status for m in results] == ["sent", "sent", "sent", "blocked"]
    assert results[3].reason == "global_cap_reached:3/3"
    assert count(db, Message) == 4
    assert count(db, OutboxItem) == 3
    outbox = db.session.scalars(sa.select(OutboxItem)).first()
    assert outbox.recipient == "ann@shopper.test"


def test_sends_committed_while_a_request_waited_for_the_lock_count_against_its_cap(db, shop):
    """A request reads the clock, then waits for the profile's lock while two others send: its
    verdict, at an earlier moment than theirs, still counts them (the day's cap is the day's)."""
    profile = make_profile(shop.id)
    later = NOON + dt.timedelta(milliseconds=3)
    first, second = (send_message(shop.model, profile.id, "email", "manual", now=later) for _ in range(2))
    third = send_message(shop.model, profile.id, "email", "manual", now=later)
    assert [m.status for m in (first, second, third)] == ["sent", "sent", "sent"]
    waited = send_message(shop.model, profile.id, "email", "manual", now=NOON)
    assert (waited.status, waited.reason) == ("blocked", "global_cap_reached:3/3")


def test_a_send_is_recorded_once_in_the_message_log_and_counted_from_it(db, shop):
    profile = make_profile(shop.id)
    for _ in range(2):
        send_message(shop.model, profile.id, "email", "campaign", "c1", now=NOON)
    send_message(shop.model, profile.id, "sms", "manual", now=NOON)
    assert count(db, Event, Event.type.like("%.sent")) == 0
    assert count(db, EngagementCounter, EngagementCounter.metric == "sent") == 0
    by_channel = profile_document(shop.model, profile)["engagement"]["by_channel"]
    assert (by_channel["email"]["sent"], by_channel["sms"]["sent"], by_channel["push"]["sent"]) == (2, 1, 0)


def test_sends_reported_by_other_systems_add_to_the_profiles_sent_count(db, shop):
    profile = make_profile(shop.id)
    assert send_message(shop.model, profile.id, "push", "manual", now=NOON).status == "sent"
    apply_engagement(profile, "push", "sent", NOON)  # what ``POST /events`` with ``push.sent`` counts
    db.session.commit()
    assert profile_document(shop.model, profile)["engagement"]["by_channel"]["push"]["sent"] == 2


def test_sms_goes_to_the_phone_and_its_cap_is_one(db, shop):
    profile = make_profile(shop.id)
    first = send_message(shop.model, profile.id, "sms", "manual", now=NOON)
    second = send_message(shop.model, profile.id, "sms", "manual", now=NOON)
    assert (first.status, second.status, second.reason) == ("sent", "blocked", "channel_cap_reached:sms:1/1")
    assert db.session.scalar(sa.select(OutboxItem.recipient)) == "+447911123456"


def test_blocked_journey_waits_and_campaign_is_dropped(db, shop):
    profile = make_profile(shop.id)
    for _ in range(3):
        send_message(shop.model, profile.id, "email", "campaign", "c1", now=NOON)
    campaign = send_message(shop.model, profile.id, "email", "campaign", "c2", now=NOON)
    journey = send_message(shop.model, profile.id, "email", "journey", journey_id="welcome", now=NOON)
    midnight = dt.datetime(2026, 11, 19, 0, tzinfo=dt.UTC)
    assert (campaign.status, campaign.retry_at) == ("blocked", midnight)
    assert (journey.status, journey.reason, journey.retry_at) == (
        "waiting",
        "global_cap_reached:3/3",
        midnight,
    )


def test_a_journey_text_waiting_for_its_cap_wakes_when_quiet_hours_are_over_too(db, shop):
    """The cap clears at the customer's midnight, inside SMS quiet hours: the step woke then only
    to wait again until morning, a wasted attempt and a second row in the log."""
    profile = make_profile(shop.id)
    send_message(shop.model, profile.id, "sms", "manual", now=NOON)  # the day's one text
    journey = send_message(shop.model, profile.id, "sms", "journey", journey_id="welcome", now=NOON)
    morning = dt.datetime(2026, 11, 19, 9, tzinfo=dt.UTC)  # 09:00 London, quiet hours over
    assert (journey.status, journey.reason, journey.retry_at) == (
        "waiting",
        "channel_cap_reached:sms:1/1",
        morning,
    )


def test_journey_without_consent_is_blocked_not_waiting(db, shop):
    profile = make_profile(shop.id, consents=("email",))
    message = send_message(shop.model, profile.id, "sms", "journey", journey_id="j", now=NOON)
    assert (message.status, message.reason, message.retry_at) == ("blocked", "no_consent:sms", None)


def test_time_sensitive_send_is_missed_when_every_window_before_its_deadline_is_blocked(db, shop):
    profile = make_profile(shop.id)
    late = NOON + dt.timedelta(hours=10)  # 22:00 London: quiet for SMS
    missed = send_message(
        shop.model, profile.id, "sms", "time_sensitive", now=late, deadline=late + dt.timedelta(hours=4)
    )
    assert (missed.status, missed.reason, missed.retry_at) == ("missed", "quiet_hours", None)
    waiting = send_message(
        shop.model, profile.id, "sms", "time_sensitive", now=late, deadline=late + dt.timedelta(hours=12)
    )
    assert (waiting.status, waiting.retry_at) == ("waiting", dt.datetime(2026, 11, 19, 9, tzinfo=dt.UTC))


def test_sweeper_retries_a_waiting_journey_once(db, shop):
    profile = make_profile(shop.id)
    for _ in range(3):
        send_message(shop.model, profile.id, "email", "campaign", "c1", now=NOON)
    waiting = send_message(shop.model, profile.id, "email", "journey", journey_id="welcome", now=NOON)
    assert retry_due(now=NOON + dt.timedelta(hours=1)) == 0
    next_morning = waiting.retry_at + dt.timedelta(hours=10)
    assert retry_due(now=next_morning) == 1
    assert retry_due(now=next_morning) == 0
    latest = db.session.scalars(sa.select(Message).order_by(Message.id.desc())).first()
    assert (latest.source, latest.journey_id, latest.status) == ("journey", "welcome", "sent")


def test_two_steps_of_one_journey_waiting_together_are_both_sent(db, shop):
    """A journey's second step queued while its first waited took the first for retried already:
    the first step was never sent, and the log said "retried"."""
    profile = make_profile(shop.id)
    for _ in range(3):
        send_message(shop.model, profile.id, "email", "campaign", "c1", now=NOON)
    steps = [
        send_message(
            shop.model, profile.id, "email", "journey", journey_id="welcome", now=NOON, content={"subject": s}
        )
        for s in ("Step 1", "Step 2")
    ]
    assert [m.status for m in steps] == ["waiting", "waiting"]
    assert retry_due(now=steps[0].retry_at + dt.timedelta(hours=10)) == 2
    retries = db.session.scalars(sa.select(Message).where(Message.retry_of_id.is_not(None))).all()
    assert sorted(m.retry_of_id for m in retries) == [m.id for m in steps]


def test_two_time_sensitive_texts_waiting_for_the_morning_are_each_sent_with_what_they_say(db, shop):
    """Each waiting message keeps its content for its retry, and each retry names the message it
    retries: the morning sends both texts, each with its own words, and then neither again."""
    first_profile = make_profile(shop.id)
    second_profile = make_profile(shop.id, "bob@shopper.test", "+447911123457")
    late = NOON + dt.timedelta(hours=10)  # 22:00 London: quiet for SMS
    texts = ["Your order has shipped", "Your parcel is out for delivery"]
    waiting = [
        send_message(
            shop.model,
            profile.id,
            "sms",
            "time_sensitive",
            now=late,
            deadline=late + dt.timedelta(hours=12),
            content={"text": text},
        )
        for profile, text in (
            (first_profile, texts[0]),
            (first_profile, texts[1]),
            (second_profile, texts[0]),
        )
    ]
    assert [m.status for m in waiting] == ["waiting"] * 3
    morning = dt.datetime(2026, 11, 19, 9, 5, tzinfo=dt.UTC)
    assert retry_due(now=morning) >= 2
    assert retry_due(now=morning + dt.timedelta(minutes=5)) == 0
    # Each waiting text is marked retried: the log no longer shows it as still to be sent.
    assert {db.session.get(Message, m.id).status for m in waiting} == {"retried"}
    retries = list(db.session.scalars(sa.select(Message).where(Message.retry_of_id.is_not(None))))
    assert sorted(m.retry_of_id for m in retries) == sorted(m.id for m in waiting)
    sent = {m.retry_of_id: m for m in retries if m.status == "sent"}
    payloads = {i.message_id: i.payload.get("text") for i in db.session.scalars(sa.select(OutboxItem))}
    assert payloads[sent[waiting[0].id].id] == texts[0]
    assert payloads[sent[waiting[2].id].id] == texts[0]
    # The first customer's second text meets the SMS cap of one a day: tried, and recorded missed.
    second_try = next(m for m in retries if m.retry_of_id == waiting[1].id)
    assert (second_try.status, second_try.reason) == ("missed", "channel_cap_reached:sms:1/1")


def test_seventh_message_in_seven_days_is_fatigue(db, shop):
    profile = make_profile(shop.id)
    for day in range(6, 0, -1):
        assert (
            send_message(
                shop.model, profile.id, "email", "campaign", f"d{day}", now=NOON - dt.timedelta(days=day)
            ).status
            == "sent"
        )
    seventh = send_message(shop.model, profile.id, "email", "campaign", "d0", now=NOON)
    assert seventh.status == "sent"
    eighth = send_message(
        shop.model, profile.id, "email", "campaign", "late", now=NOON + dt.timedelta(hours=1)
    )
    assert (eighth.status, eighth.reason) == ("blocked", "fatigue")
    assert eighth.retry_at == NOON - dt.timedelta(days=6) + dt.timedelta(days=7)


def test_send_refuses_other_shops_profiles_and_bad_input(db, shop):
    other = make_shop("bravo.myshopify.com")
    theirs = make_profile(other.id)
    with pytest.raises(NotFound):
        send_message(shop.model, theirs.id, "email", "campaign", now=NOON)
    with pytest.raises(ValidationFailed):
        send_message(shop.model, theirs.id, "fax", "campaign", now=NOON)
    with pytest.raises(ValidationFailed):
        send_message(shop.model, theirs.id, "email", "newsletter", now=NOON)
    assert count(db, Message) == 0


def test_profile_document_shows_consents_and_what_they_have_heard(db, client, shop):
    profile = make_profile(shop.id, consents=("email", "sms"))
    now = dt.datetime.now(dt.UTC)
    send_message(shop.model, profile.id, "email", "campaign", "c1", now=now)
    doc = client.get(f"/api/v1/profiles/{profile.id}", headers=shop.auth).get_json()
    assert doc["consents"]["email"]["status"] == "opted_in"
    assert doc["consents"]["email"]["consent_text"].startswith("Yes, send me news")
    assert doc["consents"]["email"]["source"] == "checkout"
    assert doc["consents"]["whatsapp"]["status"] is None
    assert doc["globally_unsubscribed"] is False
    messaging = doc["messaging"]
    assert messaging["today_by_channel"]["email"] == 1
    assert (messaging["last_7d_count"], messaging["fatigue"]) == (1, 0.1)
    assert messaging["last_contact_at"]["email"] == now.isoformat()
    assert messaging["last_contact_at"]["sms"] is None
    assert (messaging["quiet_hours_zones"], messaging["timezone_source"]) == (["Europe/London"], "profile")


def test_stats_report_fatigue_share_and_channel_coverage(db, client, shop):
    tired = make_profile(shop.id, "tired@shopper.test", None)
    make_profile(shop.id, "fresh@shopper.test", None, consents=("email",))
    now = dt.datetime.now(dt.UTC)
    for day in range(7):
        send_message(
            shop.model, tired.id, "email", "campaign", f"d{day}", now=now - dt.timedelta(days=day, hours=1)
        )
    stats = client.get("/api/v1/stats", headers=shop.auth).get_json()
    assert stats["fatigue_share"] == 0.5
    assert stats["coverage"] == {"email": 1.0, "sms": 0.5, "whatsapp": 0.5, "push": 0.5}


def test_waiting_journey_schedules_its_retry_on_rq(app, db, shop):
    queue = app.extensions["rq"]
    if not hasattr(queue, "queue_names"):
        pytest.skip("embedded mode has no scheduler: retry_due (the sweeper) retries")
    from rq.job import Job
    from rq.registry import ScheduledJobRegistry

    registry = ScheduledJobRegistry(queue=queue.queue("default"))
    for job_id in registry.get_job_ids():  # left by earlier tests of this run
        registry.remove(job_id, delete_job=True)
    profile = make_profile(shop.id)
    for _ in range(3):
        send_message(shop.model, profile.id, "email", "campaign", "c1", now=NOON)
    waiting = send_message(shop.model, profile.id, "email", "journey", journey_id="welcome", now=NOON)
    job = Job.fetch(registry.get_job_ids()[0], connection=queue.connection)
    assert (job.func_name, job.args) == ("workers.messaging.retry_message", (waiting.id,))
    job.perform()  # what the worker's scheduler runs at retry_at
    latest = db.session.scalars(sa.select(Message).order_by(Message.id.desc())).first()
    assert (latest.journey_id, latest.status) == ("welcome", "sent")


def test_retry_due_command_sweeps_waiting_messages(db, runner, shop):
    profile = make_profile(shop.id)
    for _ in range(3):
        send_message(shop.model, profile.id, "email", "campaign", "c1", now=NOON)
    send_message(shop.model, profile.id, "email", "journey", journey_id="welcome", now=NOON)
    result = runner.invoke(args=["messages", "retry-due"])
    assert result.exit_code == 0, result.output
    assert "retried 1 waiting message(s)" in result.output
    assert "retried 0" in runner.invoke(args=["messages", "retry-due"]).output


def test_allowed_send_without_an_address_is_blocked_not_counted(db, shop):
    profile = make_profile(shop.id, phone=None)
    message = send_message(shop.model, profile.id, "sms", "manual", now=NOON)
    assert (message.status, message.reason, message.sent_at) == ("blocked", "no_address:sms", None)
    assert count(db, OutboxItem) == 0 and count(db, Event) == 0


def test_the_minute_sweep_retries_a_waiting_journey_message_whose_wait_is_over(db, shop, drain):
    from workers.ingest import sweep_once

    profile = make_profile(shop.id)
    for _ in range(3):
        send_message(shop.model, profile.id, "email", "campaign", "c1", now=NOON)
    waiting = send_message(shop.model, profile.id, "email", "journey", journey_id="welcome", now=NOON)
    assert waiting.status == "waiting"
    sweep_once()  # days later: the day's cap is long past
    drain()
    sent = db.session.scalars(
        sa.select(Message).where(
            Message.shop_id == shop.id, Message.journey_id == "welcome", Message.status == "sent"
        )
    ).all()
    assert len(sent) == 1
    sweep_once()
    assert (
        db.session.scalar(sa.select(sa.func.count()).select_from(Message).where(Message.shop_id == shop.id))
        == 5
    )


def test_a_send_committed_while_the_queue_is_away_is_answered_and_left_to_the_sweep(db, shop, monkeypatch):
    """Redis away after the commit: the send stands and is answered (a 500 made clients send it
    again); the minute sweep re-queues the hand-over no job took."""
    from app.services import messaging

    def away(*_args):
        raise ConnectionError("Redis unreachable")

    monkeypatch.setattr(messaging, "transport_name", lambda channel, config: "sendgrid")
    monkeypatch.setattr(messaging, "enqueue_delivery", away)
    profile = make_profile(shop.id)
    message = send_message(shop.model, profile.id, "email", "manual", now=NOON)
    assert message.status == "sent" and count(db, OutboxItem) == 1
