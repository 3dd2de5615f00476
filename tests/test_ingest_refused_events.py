"""A batch in the provider's format with events we cannot use: the good ones are stored and worked,
each refused one is kept dead with its reason (never refused with the batch, never lost), and
the provider's resend of the batch changes nothing."""

from __future__ import annotations

import json

import sqlalchemy as sa

from app.extensions import db
from app.models import Event, WebhookDelivery
from app.services.ingest.refused import refused_id
from tests.helpers import make_shop
from tests.ingest_support import fixture, ishop_fixture, post_pixel, sendgrid_post, whatsapp_post
from workers.ingest import retry_delivery

ishop = ishop_fixture
WEIRD = {"email": "dana@example.com", "timestamp": 1791100100, "event": "weird", "sg_event_id": "sg-w-1"}


def rows() -> list[WebhookDelivery]:
    db.session.expire_all()
    return list(db.session.scalars(sa.select(WebhookDelivery).order_by(WebhookDelivery.id)))


def dead_rows() -> list[WebhookDelivery]:
    return [r for r in rows() if r.status == "dead"]


def event_ids() -> set[str]:
    """The ids of the provider events stored (enrichment's own lifecycle events aside)."""
    stmt = sa.select(Event.external_id).where(Event.source.in_(("sendgrid", "pixel", "whatsapp")))
    return set(db.session.scalars(stmt))


def snapshot() -> list[tuple]:
    return [(r.id, r.external_id, r.status, r.attempts, r.last_error, r.received_at) for r in rows()]


def test_a_sendgrid_batch_with_an_unknown_event_stores_the_good_ones_and_dead_letters_the_bad_one(
    client, ishop, drain
):
    batch = [*fixture("sendgrid/events.json")[:3], WEIRD]
    answer = sendgrid_post(client, ishop.domain, batch)
    assert answer.status_code == 200, answer.get_data(as_text=True)
    assert answer.get_json() == {
        "accepted": 3,
        "duplicates": 0,
        "dead_lettered": 1,
        "refused": ["events[3]: unknown event 'weird'"],
    }
    drain()
    assert [r.status for r in rows()] == ["processed"] * 3 + ["dead"]
    assert event_ids() == {"sg-e-1", "sg-e-2", "sg-e-3"}
    dead = dead_rows()[0]
    assert (dead.provider, dead.topic, dead.external_id) == ("sendgrid", "weird", "refused:sg-w-1")
    assert (dead.last_error, dead.attempts, dead.shop_id) == (
        "BadPayload: events[3]: unknown event 'weird'",
        0,
        ishop.id,
    )
    assert json.loads(dead.body) == WEIRD  # the raw event, for an operator to read


def test_sendgrid_resending_the_batch_changes_nothing(client, ishop, drain):
    batch = [*fixture("sendgrid/events.json")[:2], WEIRD, {**WEIRD, "sg_event_id": None}]
    assert sendgrid_post(client, ishop.domain, batch).status_code == 200
    drain()
    before = snapshot()
    again = sendgrid_post(client, ishop.domain, batch)
    drain()
    assert again.status_code == 200
    body = again.get_json()
    assert (body["accepted"], body["duplicates"], body["dead_lettered"]) == (0, 4, 0)
    assert body["refused"] == ["events[2]: unknown event 'weird'", "events[3]: unknown event 'weird'"]
    assert snapshot() == before and len(dead_rows()) == 2


def test_an_event_without_sg_event_id_is_dead_lettered_under_a_hash_of_its_json(client, ishop, drain):
    no_id = {k: v for k, v in fixture("sendgrid/events.json")[1].items() if k != "sg_event_id"}
    batch = [fixture("sendgrid/events.json")[0], no_id, 42]
    answer = sendgrid_post(client, ishop.domain, batch).get_json()
    assert answer["refused"] == [
        "events[1]: sg_event_id is required",
        "events[2]: an event must be a JSON object",
    ]
    dead = {r.external_id: r for r in dead_rows()}
    assert set(dead) == {refused_id(no_id, None), refused_id(42, None)}
    assert all(ext.startswith("refused:sha256:") for ext in dead)
    # The same event with its keys in another order is the same event: its resend is a duplicate.
    reordered = dict(reversed(list(no_id.items())))
    again = sendgrid_post(client, ishop.domain, [fixture("sendgrid/events.json")[0], reordered]).get_json()
    assert (again["accepted"], again["duplicates"], again["dead_lettered"]) == (0, 2, 0)


def test_a_corrected_event_sent_later_under_the_same_id_is_stored_and_worked(client, ishop, drain):
    good = fixture("sendgrid/events.json")[0]
    sendgrid_post(client, ishop.domain, [good, {**WEIRD, "event": "opened-ish", "sg_event_id": "sg-e-9"}])
    fixed = {**fixture("sendgrid/events.json")[1], "sg_event_id": "sg-e-9"}
    answer = sendgrid_post(client, ishop.domain, [fixed]).get_json()
    drain()
    assert answer == {"accepted": 1, "duplicates": 0}
    assert "sg-e-9" in event_ids() and len(dead_rows()) == 1


def test_a_batch_with_no_usable_event_is_still_a_400_and_stores_nothing(client, ishop):
    answer = sendgrid_post(client, ishop.domain, [WEIRD, {**WEIRD, "sg_event_id": "sg-w-2"}])
    assert answer.status_code == 400
    assert answer.get_json()["error"]["message"] == "events[0]: unknown event 'weird' (and 1 more refused)"
    assert rows() == []


def test_a_pixel_batch_with_a_malformed_event_stores_the_good_one_and_dead_letters_the_other(
    client, ishop, drain
):
    good = fixture("pixel/page_viewed.json")
    bad = {**good, "name": "teleported"}  # the same event id as its valid neighbour
    answer = post_pixel(client, [good, bad])
    assert answer.status_code == 200
    assert answer.get_json() == {
        "accepted": 1,
        "duplicates": 0,
        "dead_lettered": 1,
        "refused": ["events[1]: unknown event name 'teleported'"],
    }
    assert answer.headers["Access-Control-Allow-Origin"]
    drain()
    assert event_ids() == {good["id"]}
    dead = dead_rows()[0]
    assert (dead.provider, dead.topic, dead.external_id) == ("pixel", "teleported", f"refused:{good['id']}")
    assert dead.last_error == "BadPayload: events[1]: unknown event name 'teleported'"
    assert json.loads(dead.body) == bad
    before = snapshot()
    again = post_pixel(client, [good, bad]).get_json()
    drain()
    assert (again["accepted"], again["duplicates"], again["dead_lettered"]) == (0, 2, 0)
    assert snapshot() == before


def test_a_pixel_batch_whose_refused_event_names_another_shop_is_a_400(client, ishop):
    make_shop("other.myshopify.com")
    good = fixture("pixel/page_viewed.json")
    elsewhere = {**good, "id": "px-else", "shop": "other.myshopify.com", "timestamp": "later"}
    answer = post_pixel(client, [good, elsewhere])
    assert answer.status_code == 400
    assert answer.get_json()["error"]["message"] == "all events of a batch must name the same shop"
    assert rows() == []


def test_a_whatsapp_notification_dead_letters_its_broken_message(client, ishop, drain):
    body = fixture("whatsapp/inbound_text.json")
    messages = body["entry"][0]["changes"][0]["value"]["messages"]
    messages.append({**messages[0], "id": "wamid.broken", "timestamp": "soon"})
    answer = whatsapp_post(client, ishop.domain, body)
    assert answer.status_code == 200 and answer.get_json()["dead_lettered"] == 1
    drain()
    dead = dead_rows()[0]
    assert (dead.topic, dead.external_id) == ("message", "refused:wamid.broken")
    assert "items[1]: message.timestamp" in dead.last_error
    assert whatsapp_post(client, ishop.domain, body).get_json()["dead_lettered"] == 0
    assert retry_delivery(dead.id)  # the item is still broken: dead again, with the check's reason
    drain()
    [again] = dead_rows()
    assert (again.id, again.attempts) == (dead.id, 1)
    assert again.last_error.startswith("BadPayload: item: message.timestamp")


def test_a_dead_lettered_event_is_listed_counted_and_retried_without_vanishing(
    client, runner, auth, ishop, drain
):
    sendgrid_post(client, ishop.domain, [fixture("sendgrid/events.json")[0], WEIRD])
    drain()
    dead = dead_rows()[0]
    listed = runner.invoke(args=["dlq", "list"])
    assert f"{dead.id:>8}" in listed.output and "unknown event 'weird'" in listed.output
    status = client.get("/api/v1/ingest/status", headers=ishop.auth).get_json()
    assert (status["dead_letter"], status["processed"]) == (1, 1)
    auth.login_as(ishop)
    assert "unknown event" in client.get("/deliveries/").get_data(as_text=True)
    # The code still knows no "weird" event: the retry fails alike and the row is dead again.
    assert runner.invoke(args=["dlq", "retry", str(dead.id)]).exit_code == 0
    drain()
    again = dead_rows()
    assert [(r.id, r.attempts) for r in again] == [(dead.id, 1)]
    assert "BadPayload: event: unknown event 'weird'" in again[0].last_error
