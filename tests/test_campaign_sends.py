"""A campaign send: chunks run as jobs (by the workers under RQ), each exactly once, none lost."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from app.errors import NotFound, ValidationFailed
from app.models import CampaignChunk, Message, OutboxItem, Profile
from app.services import campaign_sends, messaging_bulk
from app.services.consent import unsubscribe_all
from tests.gate_helpers import NOON, make_profile


def _audience(db, shop, n: int, *, unsubscribed: tuple[int, ...] = ()) -> list[int]:
    profiles = [make_profile(shop.id, f"c{i}@shopper.test", None) for i in range(n)]
    for i in unsubscribed:
        unsubscribe_all(profiles[i], source="api", captured_at=NOON - dt.timedelta(days=1))
    db.session.commit()
    return [p.id for p in profiles]


def _log(db, campaign_id: str) -> dict[int, tuple[str, str | None]]:
    rows = db.session.execute(
        sa.select(Message.profile_id, Message.status, Message.reason).where(
            Message.campaign_id == campaign_id
        )
    )
    return {pid: (status, reason) for pid, status, reason in rows}


def _count(db, model) -> int:
    return db.session.scalar(sa.select(sa.func.count()).select_from(model))


def test_a_campaign_send_runs_every_chunk_through_the_gate(db, shop, drain):
    ids = _audience(db, shop, 5, unsubscribed=(1,))
    send = campaign_sends.start_send(shop.model, ids, "email", campaign_id="spring", now=NOON, chunk=2)
    drain()
    progress = campaign_sends.progress(shop.model, send.id)
    assert (progress.audience, progress.chunks, progress.done, progress.finished) == (5, 3, 3, True)
    assert (progress.result.sent, progress.result.blocked, progress.result.failed) == (4, 1, 0)
    assert progress.result.reasons == {"sent": 4, "global_unsubscribe": 1}
    assert _log(db, "spring") == {
        pid: ("blocked", "global_unsubscribe") if pid == ids[1] else ("sent", None) for pid in ids
    }
    assert _count(db, OutboxItem) == 4
    # Every message carries the send's moment, whenever its chunk's job ran.
    times = db.session.scalars(sa.select(Message.created_at).where(Message.campaign_id == "spring")).all()
    assert set(times) == {NOON}


def test_a_campaign_sent_again_reaches_nobody_it_reached_before(db, shop, drain):
    """A second click on Send, or a rerun after a partial failure: a campaign goes to a person once."""
    ids = _audience(db, shop, 5, unsubscribed=(1,))
    campaign_sends.start_send(shop.model, ids, "email", campaign_id="spring", now=NOON, chunk=2)
    drain()
    again = campaign_sends.start_send(
        shop.model, ids, "email", campaign_id="spring", now=NOON + dt.timedelta(hours=1), chunk=2
    )
    drain()
    result = campaign_sends.progress(shop.model, again.id).result
    assert (result.sent, result.blocked) == (0, 5)
    assert result.reasons == {"already_sent": 4, "global_unsubscribe": 1}
    assert _count(db, OutboxItem) == 4


def test_the_audience_counts_the_people_a_send_can_reach_so_its_outcomes_add_up(db, shop, other_shop, drain):
    from app.services import merges

    ids = _audience(db, shop, 4)
    merged = merges.merge_profiles(shop.model, ids[0], ids[1], reason="manual", actor="owner")
    stranger = make_profile(other_shop.id, "x@shopper.test", None).id
    db.session.commit()
    named = [*ids, stranger, 10**9]  # a merged-away id, another shop's, and nobody's
    send = campaign_sends.start_send(shop.model, named, "email", campaign_id="tidy", now=NOON)
    drain()
    progress = campaign_sends.progress(shop.model, send.id)
    assert progress.audience == 3  # the survivor once, and the two others
    assert progress.result.sent + progress.result.blocked + progress.result.failed == progress.audience
    assert set(_log(db, "tidy")) == {merged.winner_id, ids[2], ids[3]}
    with pytest.raises(ValidationFailed, match="names no customer of this shop"):
        campaign_sends.start_send(shop.model, [stranger], "email", campaign_id="none", now=NOON)


def test_a_chunk_run_twice_writes_nothing_the_second_time(db, shop, drain):
    ids = _audience(db, shop, 3)
    send = campaign_sends.start_send(shop.model, ids, "email", campaign_id="once", now=NOON)
    drain()
    chunk_id = db.session.scalar(sa.select(CampaignChunk.id).where(CampaignChunk.send_id == send.id))
    assert campaign_sends.run_chunk(chunk_id) is None
    assert len(_log(db, "once")) == 3
    assert _count(db, Message) == 3


def test_a_chunk_whose_job_was_lost_is_sent_by_the_sweeper(db, shop, drain, monkeypatch):
    ids = _audience(db, shop, 3)
    with monkeypatch.context() as lost:
        lost.setattr(campaign_sends.jobs, "enqueue", lambda *a, **kw: None)  # Redis died after the commit
        send = campaign_sends.start_send(shop.model, ids, "email", campaign_id="lost", now=NOON, chunk=2)
    assert _log(db, "lost") == {}
    assert campaign_sends.requeue_stale() == 0  # too fresh: its job may still be queued
    later = dt.datetime.now(dt.UTC) + campaign_sends.STALE_AFTER + dt.timedelta(seconds=1)
    assert campaign_sends.requeue_stale(later) == 2
    drain()
    assert campaign_sends.progress(shop.model, send.id).finished
    assert set(_log(db, "lost")) == set(ids)
    assert campaign_sends.requeue_stale(later) == 0


def test_a_failing_chunk_counts_its_attempts_then_fails_for_good_while_the_others_send(
    db, shop, drain, monkeypatch
):
    ids = _audience(db, shop, 4)
    real = messaging_bulk.send_chunk

    def broken(shop_model, part, bulk, policy):
        if ids[0] in part:
            raise RuntimeError("provider template missing")
        return real(shop_model, part, bulk, policy)

    monkeypatch.setattr(messaging_bulk, "send_chunk", broken)
    send = campaign_sends.start_send(shop.model, ids, "email", campaign_id="half", now=NOON, chunk=2)
    drain()
    first = db.session.scalar(
        sa.select(CampaignChunk).where(CampaignChunk.send_id == send.id, CampaignChunk.position == 0)
    )
    assert (first.status, first.attempts, first.last_error) == ("pending", 1, "RuntimeError")
    for _ in range(campaign_sends.MAX_ATTEMPTS - 1):
        with pytest.raises(RuntimeError):
            campaign_sends.run_chunk(first.id)
    db.session.refresh(first)
    assert (first.status, first.attempts) == ("failed", campaign_sends.MAX_ATTEMPTS)
    progress = campaign_sends.progress(shop.model, send.id)
    assert (progress.done, progress.failed_chunks, progress.finished) == (1, 1, True)
    assert set(_log(db, "half")) == set(ids[2:])
    later = dt.datetime.now(dt.UTC) + campaign_sends.STALE_AFTER + dt.timedelta(seconds=1)
    assert campaign_sends.requeue_stale(later) == 0  # failed for good is not retried by itself
    # Once the cause is fixed, the merchant retries the failed chunk: its customers get the send.
    monkeypatch.setattr(messaging_bulk, "send_chunk", real)
    assert campaign_sends.retry_failed(shop.model, send.id) == 1
    drain()
    progress = campaign_sends.progress(shop.model, send.id)
    assert (progress.done, progress.failed_chunks, progress.result.sent) == (2, 0, 4)
    assert set(_log(db, "half")) == set(ids)
    assert campaign_sends.retry_failed(shop.model, send.id) == 0


def _sms_audience(db, shop, n: int) -> list[int]:
    profiles = [make_profile(shop.id, f"t{i}@shopper.test", f"+4479111234{i:02d}") for i in range(n)]
    db.session.commit()
    return [p.id for p in profiles]


@pytest.mark.parametrize(
    ("delay_hours", "status", "reason"), [(0, "sent", None), (11, "blocked", "quiet_hours")]
)
def test_a_chunk_that_runs_late_is_judged_when_its_messages_go_out(
    db, shop, drain, monkeypatch, delay_hours, status, reason
):
    # An SMS campaign made at noon (London) whose chunk's job was lost in an outage and only runs
    # eleven hours later, at 23:00: its texts would go out in quiet hours, so the gate judges 23:00.
    ids = _sms_audience(db, shop, 2)
    with monkeypatch.context() as lost:
        lost.setattr(campaign_sends.jobs, "enqueue", lambda *a, **kw: None)
        send = campaign_sends.start_send(shop.model, ids, "sms", campaign_id="late", now=NOON)
    send.created_at -= dt.timedelta(hours=delay_hours)  # made that long before its chunk runs
    db.session.commit()
    campaign_sends.requeue_stale(dt.datetime.now(dt.UTC) + campaign_sends.STALE_AFTER * 2)
    drain()
    assert _log(db, "late") == dict.fromkeys(ids, (status, reason))
    stamped = db.session.scalars(sa.select(Message.created_at).where(Message.campaign_id == "late")).all()
    assert all(abs(t - (NOON + dt.timedelta(hours=delay_hours))) < dt.timedelta(minutes=1) for t in stamped)


def test_retrying_another_shops_send_is_not_found(db, shop, other_shop):
    ids = _audience(db, shop, 1)
    send = campaign_sends.start_send(shop.model, ids, "email", campaign_id="mine", now=NOON)
    with pytest.raises(NotFound):
        campaign_sends.retry_failed(other_shop.model, send.id)


def test_the_console_and_the_cli_retry_a_sends_failed_chunks(
    db, shop, client, auth, runner, drain, monkeypatch
):
    ids = _audience(db, shop, 2)
    monkeypatch.setattr(campaign_sends.jobs, "enqueue", lambda *a, **kw: None)
    send = campaign_sends.start_send(shop.model, ids, "email", campaign_id="retry", now=NOON)
    db.session.execute(
        sa.update(CampaignChunk).values(status="failed", attempts=5, last_error="RuntimeError")
    )
    db.session.commit()
    auth.login_as(shop)
    page = client.get("/messages/").get_data(as_text=True)
    assert "1 chunk(s) failed" in page and "Retry failed chunks" in page
    assert client.post(f"/messages/sends/{send.id}/retry").status_code == 302
    chunk = db.session.scalar(sa.select(CampaignChunk))
    db.session.refresh(chunk)
    assert (chunk.status, chunk.attempts, chunk.last_error) == ("pending", 0, None)
    chunk.status = "failed"
    db.session.commit()
    result = runner.invoke(args=["messages", "retry-chunks", "--shop", shop.domain, str(send.id)])
    assert result.exit_code == 0 and "queued 1 failed chunk(s) of send" in result.output


def test_a_send_checks_its_request_before_recording_anything(db, shop):
    ids = _audience(db, shop, 1)
    with pytest.raises(ValidationFailed):
        campaign_sends.start_send(shop.model, ids, "fax", campaign_id="x")
    with pytest.raises(ValidationFailed):
        campaign_sends.start_send(shop.model, [], "email", campaign_id="x")
    with pytest.raises(ValidationFailed):
        campaign_sends.start_send(shop.model, ids, "email", campaign_id="x", chunk=0)
    assert _count(db, CampaignChunk) == 0


def test_another_shops_send_is_not_found(db, shop, other_shop):
    ids = _audience(db, shop, 1)
    send = campaign_sends.start_send(shop.model, ids, "email", campaign_id="mine", now=NOON)
    with pytest.raises(NotFound):
        campaign_sends.progress(other_shop.model, send.id)


def test_the_live_audience_leaves_out_merged_and_erased_profiles(db, shop):
    ids = _audience(db, shop, 3)
    db.session.get(Profile, ids[1]).merged_into_id = ids[0]
    db.session.get(Profile, ids[2]).erased_at = NOON
    db.session.commit()
    assert campaign_sends.live_audience(shop.id) == [ids[0]]


def test_the_cli_sends_to_the_whole_shop_and_reports_where_the_send_stands(db, shop, runner, drain, tmp_path):
    ids = _audience(db, shop, 3, unsubscribed=(2,))
    out = runner.invoke(
        args=["messages", "send-campaign", "--shop", shop.domain, "--channel", "email", "--campaign", "cli"]
    )
    assert out.exit_code == 0, out.output
    drain()
    send_id = int(out.output.split()[1].rstrip(":"))
    status = runner.invoke(args=["messages", "campaign-status", "--shop", shop.domain, str(send_id)])
    assert "finished, 1/1 chunk(s) done" in status.output
    assert "audience 3: sent 2, blocked 1, no address 0" in status.output
    assert "global_unsubscribe: 1" in status.output
    audience = tmp_path / "audience.txt"
    audience.write_text(f"{ids[0]}\nnot-an-id\n")
    bad = runner.invoke(
        args=[
            "messages",
            "send-campaign",
            "--shop",
            shop.domain,
            "--channel",
            "email",
            "--profiles",
            str(audience),
        ]
    )
    assert bad.exit_code == 1 and "one profile id per line" in bad.output
    unknown = runner.invoke(
        args=["messages", "send-campaign", "--shop", "nope.myshopify.com", "--channel", "sms"]
    )
    assert unknown.exit_code == 1


def test_a_profile_merged_away_before_its_chunk_runs_is_not_messaged(db, shop, drain, monkeypatch):
    ids = _audience(db, shop, 3)
    with monkeypatch.context() as queued:
        queued.setattr(campaign_sends.jobs, "enqueue", lambda *a, **kw: None)
        send = campaign_sends.start_send(shop.model, ids, "email", campaign_id="late", now=NOON)
    db.session.get(Profile, ids[1]).merged_into_id = ids[0]  # resolution merged two of them meanwhile
    db.session.commit()
    campaign_sends.requeue_stale(dt.datetime.now(dt.UTC) + campaign_sends.STALE_AFTER * 2)
    drain()
    assert set(_log(db, "late")) == {ids[0], ids[2]}
    progress = campaign_sends.progress(shop.model, send.id)
    assert (progress.audience, progress.result.decisions, progress.finished) == (3, 2, True)
