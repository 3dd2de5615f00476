"""The console's Messages screen and its global-unsubscribe action."""

from __future__ import annotations

import pytest

from app.services.messaging import send_message
from tests.gate_helpers import CHANNELS, NOON, make_profile
from tests.helpers import make_shop


def seed_log(shop):
    profile = make_profile(shop.id)
    for _ in range(4):
        send_message(shop.model, profile.id, "email", "campaign", "spring-sale", now=NOON)
    send_message(shop.model, profile.id, "sms", "journey", journey_id="welcome", now=NOON)
    return profile


def test_messages_screen_lists_every_attempt_with_its_reason(client, auth, shop):
    seed_log(shop)
    auth.login_as(shop)
    page = client.get("/messages/")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "<html" in html and "global_cap_reached:3/3" in html and "spring-sale" in html


def test_messages_filter_returns_only_the_log_fragment(client, auth, shop):
    seed_log(shop)
    auth.login_as(shop)
    fragment = client.get("/messages/?reason=global_cap_reached&channel=sms", headers={"HX-Request": "true"})
    html = fragment.get_data(as_text=True)
    assert "<html" not in html and "<table" in html
    assert "global_cap_reached:3/3" in html and "spring-sale" not in html  # the SMS journey, not the emails
    sent_only = client.get("/messages/?status=sent", headers={"HX-Request": "true"}).get_data(as_text=True)
    assert sent_only.count("badge sent") == 3 and "badge blocked" not in sent_only


def test_messages_screen_is_scoped_to_the_signed_in_shop(client, auth, shop, other_shop):
    seed_log(other_shop)
    auth.login_as(shop)
    assert "spring-sale" not in client.get("/messages/").get_data(as_text=True)


def test_console_unsubscribe_turns_every_channel_off(client, auth, shop):
    profile = make_profile(shop.id)
    auth.login_as(shop)
    assert client.post(f"/messages/unsubscribe/{profile.id}", csrf=False).status_code == 400
    assert client.post(f"/messages/unsubscribe/{profile.id}").status_code == 302
    for channel in CHANNELS:
        body = {"profile_id": profile.id, "channel": channel, "at": NOON.isoformat()}
        answer = client.post("/api/v1/gate/check", json=body, headers=shop.auth).get_json()
        assert answer["reason"] == "global_unsubscribe"


def test_console_unsubscribe_of_another_shops_profile_is_404(client, auth, shop, other_shop):
    theirs = make_profile(other_shop.id)
    auth.login_as(shop)
    assert client.post(f"/messages/unsubscribe/{theirs.id}").status_code == 404


def test_messages_screen_needs_a_login(client, shop):
    assert client.get("/messages/").status_code == 302


def test_the_messages_screen_shows_campaign_sends_and_polls_only_while_one_runs(
    client, auth, shop, other_shop, monkeypatch
):
    from app.services import campaign_sends

    ids = [make_profile(shop.id, f"s{i}@shopper.test", None).id for i in range(3)]
    with monkeypatch.context() as queued:  # the workers have not picked the chunks up yet
        queued.setattr(campaign_sends.jobs, "enqueue", lambda *a, **kw: None)
        send = campaign_sends.start_send(shop.model, ids, "email", campaign_id="autumn", now=NOON, chunk=2)
    theirs = make_profile(other_shop.id, "t@shopper.test", None)
    campaign_sends.start_send(other_shop.model, [theirs.id], "email", campaign_id="not-yours", now=NOON)
    auth.login_as(shop)
    page = client.get("/messages/").get_data(as_text=True)
    assert "Campaign sends" in page and "autumn" in page and "0/2 chunks" in page and "not-yours" not in page
    assert 'hx-get="/messages/sends"' in page
    running = client.get("/messages/sends", headers={"HX-Request": "true"})
    assert running.status_code == 200 and "<html" not in running.get_data(as_text=True)
    for chunk_id in _chunk_ids(send.id):
        campaign_sends.run_chunk(chunk_id)
    finished = client.get("/messages/sends", headers={"HX-Request": "true"})
    html = finished.get_data(as_text=True)
    assert finished.status_code == 286  # htmx stops polling
    assert "finished" in html and 'hx-get="/messages/sends"' not in html
    assert client.get("/messages/sends").status_code == 302  # not a partial request: the whole screen


def test_a_support_agent_sees_a_failed_chunk_without_a_retry_button_that_would_answer_403(
    client, auth, db, monkeypatch
):
    """Retrying a send is staff's: support agents read the screen, and each screen offers only the
    actions a role may take (the button answered a bare 403)."""
    import sqlalchemy as sa

    from app.models import CampaignChunk
    from app.services import campaign_sends

    support = make_shop("helpdesk.myshopify.com", role="support")
    ids = [make_profile(support.id, f"s{i}@shopper.test", None).id for i in range(2)]
    monkeypatch.setattr(campaign_sends.jobs, "enqueue", lambda *a, **kw: None)
    send = campaign_sends.start_send(support.model, ids, "email", campaign_id="autumn", now=NOON, chunk=2)
    db.session.execute(
        sa.update(CampaignChunk).where(CampaignChunk.send_id == send.id).values(status="failed")
    )
    db.session.commit()
    auth.login(support.owner_email)
    page = client.get("/messages/").get_data(as_text=True)
    assert "1 chunk(s) failed" in page and "Retry failed chunks" not in page
    assert client.post(f"/messages/sends/{send.id}/retry").status_code == 403


def _chunk_ids(send_id: int) -> list[int]:
    import sqlalchemy as sa

    from app.extensions import db
    from app.models import CampaignChunk

    return list(db.session.scalars(sa.select(CampaignChunk.id).where(CampaignChunk.send_id == send_id)))


def test_messages_the_provider_refused_or_lost_can_be_filtered_by_reason(client, auth, shop):
    from app.extensions import db

    profile = make_profile(shop.id)
    message = send_message(shop.model, profile.id, "sms", "campaign", "spring-sale", now=NOON)
    message.status, message.reason = "failed", "provider_opted_out"
    db.session.commit()
    auth.login_as(shop)
    page = client.get("/messages/").get_data(as_text=True)
    for reason in ("provider_opted_out", "provider_bounce", "provider_undelivered", "provider_unreachable"):
        assert f'value="{reason}"' in page
    fragment = client.get("/messages/?reason=provider_opted_out", headers={"HX-Request": "true"})
    assert "provider_opted_out" in fragment.get_data(as_text=True).split("<tbody", 1)[1]


def test_the_log_names_each_customer_and_shows_times_in_the_shops_zone(client, auth, shop, db):
    """Rows said "#307" and UTC, where every other screen names the customer in the shop's zone."""
    profile = seed_log(shop)
    profile.first_name, profile.last_name = "Ana", "Silva"
    db.session.commit()
    auth.login_as(shop)
    html = client.get("/messages/", headers={"HX-Request": "true"}).get_data(as_text=True)
    assert f'href="/customers/{profile.id}">Ana Silva</a>' in html
    assert " UTC" not in html and "GMT" in html  # NOON is in November: London is on GMT


def test_the_gates_reasons_read_as_words_with_their_code_beside(client, auth, shop):
    """Raw codes (no_consent:sms) sat under a filter that says "no consent"."""
    profile = seed_log(shop)
    auth.login_as(shop)
    html = client.get("/messages/").get_data(as_text=True)
    assert 'title="global_cap_reached:3/3">daily cap reached (3 of 3)<' in html
    section = client.get(f"/customers/{profile.id}/messages", headers={"HX-Request": "true"}).get_data(
        as_text=True
    )
    assert "daily cap reached (3 of 3)" in section


@pytest.mark.parametrize(
    ("query", "said"),
    [
        ("channel=sns", "No channel is called &#39;sns&#39;"),
        ("status=delivered", "No status is called &#39;delivered&#39;"),
    ],
)
def test_a_filter_no_choice_offers_says_so_instead_of_an_empty_log(client, auth, shop, query, said):
    """An unknown channel matched nothing and showed an empty log, as if nothing had been sent."""
    auth.login_as(shop)
    page = client.get(f"/messages/?{query}")
    assert page.status_code == 400 and said in page.get_data(as_text=True)
