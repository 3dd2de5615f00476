"""Shop A's user and token can neither read, change nor count anything of shop B.

The test walks every route the app has (``app.url_map``), fills each URL
parameter with an id of one of shop B's rows, and calls every method as
shop A's signed-in owner and with shop A's API token. Shop B's rows must
be byte-for-byte unchanged afterwards and no response may show shop B's
data. A route with a parameter this test does not know fails the test, so
new routes are covered as they are added.
"""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

import pytest
import sqlalchemy as sa

from app.extensions import db
from app.models import (
    CampaignChunk,
    CampaignSend,
    ConsentRecord,
    Event,
    JobRun,
    Merge,
    MergeCandidate,
    Message,
    Order,
    Profile,
    Shop,
    WebhookDelivery,
)
from app.models.base import utcnow
from tests.helpers import make_shop

SECRET_NAME = "Zebedee"
SECRET_EMAIL = "zebedee.secret@bravo-only.example.net"


def _seed_shop_b() -> dict[str, object]:
    """Shop B with one row of each kind a route can name; returns ids by parameter name."""
    b = make_shop("bravo.myshopify.com")
    now = utcnow()
    p1 = Profile(shop_id=b.id, first_name=SECRET_NAME, last_name="Bravo", search_text=SECRET_EMAIL)
    p2 = Profile(shop_id=b.id, first_name=SECRET_NAME, last_name="Twin")
    db.session.add_all([p1, p2])
    db.session.flush()
    order = Order(
        shop_id=b.id,
        profile_id=p1.id,
        source="shopify",
        external_id="b-1",
        number="#B1",
        channel="online",
        placed_at=now,
        currency="GBP",
        total=Decimal("10.00"),
        email=SECRET_EMAIL,
    )
    candidate = MergeCandidate(shop_id=b.id, profile_a_id=p1.id, profile_b_id=p2.id, reason="shared_phone")
    merge = Merge(
        shop_id=b.id,
        winner_id=p1.id,
        loser_id=p2.id,
        reason="manual",
        undo_deadline=now + dt.timedelta(days=7),
        snapshot={},
    )
    job = JobRun(id="job-bravo-1", shop_id=b.id, kind="enrichment")
    delivery = WebhookDelivery(
        shop_id=b.id,
        provider="shopify",
        topic="orders/create",
        external_id="b-wh",
        body=b"{}",
        status="dead",
        last_error="boom",
    )
    event = Event(
        shop_id=b.id,
        profile_id=p1.id,
        type="page_viewed",
        source="pixel",
        external_id="b-ev",
        occurred_at=now,
    )
    message = Message(shop_id=b.id, profile_id=p1.id, channel="email", source="manual", status="sent")
    consent = ConsentRecord(
        shop_id=b.id, profile_id=p1.id, channel="email", status="opted_in", source="api", captured_at=now
    )
    send = CampaignSend(shop_id=b.id, channel="email", source="campaign", send_at=now, audience=1)
    db.session.add_all([order, candidate, merge, job, delivery, event, message, consent, send])
    db.session.flush()
    db.session.add(
        CampaignChunk(
            shop_id=b.id, send_id=send.id, position=0, profile_ids=[p1.id], status="failed", attempts=5
        )
    )
    db.session.commit()
    return {
        "shop": b,
        "profile_id": p1.id,
        "other_id": p2.id,
        "order_id": order.id,
        "candidate_id": candidate.id,
        "merge_id": merge.id,
        "job_id": job.id,
        "delivery_id": delivery.id,
        "event_id": event.id,
        "message_id": message.id,
        "consent_id": consent.id,
        "send_id": send.id,
        "shop_id": b.id,
        "shop_domain": b.domain,
        "segment_id": 1,
        "id": p1.id,
    }


def _shop_rows(shop_id: int) -> str:
    """Every row of every shop-owned table of one shop, as canonical text."""
    out = []
    for table in db.metadata.sorted_tables:
        if "shop_id" not in table.columns:
            continue
        rows = (
            db.session.execute(
                sa.select(table).where(table.c.shop_id == shop_id).order_by(*table.primary_key.columns)
            )
            .mappings()
            .all()
        )
        out.append(json.dumps([{k: str(v) for k, v in r.items()} for r in rows], sort_keys=True))
    shop = db.session.get(Shop, shop_id)
    out.append(json.dumps({c.name: str(getattr(shop, c.key)) for c in Shop.__table__.columns}))
    return "\n".join(out)


def _urls(app, rule, values: dict[str, object]) -> list[str]:
    """Every URL of ``rule`` with shop B's ids; one per option of an ``any(...)`` segment."""
    missing = [arg for arg in rule.arguments if arg not in values and not _options(rule, arg)]
    assert not missing, f"tenancy test does not know URL parameter(s) {missing} of {rule.rule}: add them"
    adapter = app.url_map.bind("localhost")
    combos = [{}]
    for arg in rule.arguments:
        options = _options(rule, arg) or [values[arg]]
        combos = [{**c, arg: option} for c in combos for option in options]
    return [adapter.build(rule.endpoint, combo, force_external=False) for combo in combos]


def _options(rule, arg) -> list[str]:
    """The fixed choices of an ``any(a, b)`` URL segment, or [] for a free one."""
    converter = rule._converters.get(arg)
    return sorted(getattr(converter, "items", None) or [])


LEAK_MARKERS = (SECRET_NAME.encode(), SECRET_EMAIL.encode(), b"bravo.myshopify.com", b"#B1")


def test_no_route_lets_shop_a_see_or_change_shop_b(app, client, auth):
    shop_a = make_shop("alpha.myshopify.com")
    values = _seed_shop_b()
    shop_b = values["shop"]
    auth.login_as(shop_a)
    before = _shop_rows(shop_b.id)
    checked = 0
    # Sign-out last, so every other console request runs signed in as shop A.
    rules = sorted(app.url_map.iter_rules(), key=lambda r: r.endpoint == "auth.logout")
    for rule in rules:
        if rule.endpoint == "static":
            continue
        for url, method in [
            (u, m) for u in _urls(app, rule, values) for m in sorted(rule.methods - {"HEAD", "OPTIONS"})
        ]:
            for headers in ({}, shop_a.auth):
                body = {
                    "profile_id": values["profile_id"],
                    "other_id": values["other_id"],
                    "identifier": "email:visitor@alpha-only.example.net",
                    "channel": "email",
                }
                response = client.open(url, method=method, headers=headers, json=body)
                checked += 1
                leaked = [m for m in LEAK_MARKERS if m in response.data]
                assert not leaked, f"{method} {url} showed shop B's data {leaked} ({response.status_code})"
                assert response.status_code < 500, f"{method} {url} answered {response.status_code}"
                db.session.expire_all()
                assert _shop_rows(shop_b.id) == before, f"{method} {url} changed shop B's rows"
    assert checked > 20


@pytest.mark.parametrize("path", ["/customers/", "/dashboard", "/settings/"])
def test_console_pages_require_login(client, path):
    response = client.get(path)
    assert response.status_code == 302
    assert "/login" in response.headers["Location"]


@pytest.mark.parametrize("path", ["/api/v1/stats", "/api/v1/settings", "/api/v1/profiles?q=a"])
def test_api_requires_a_valid_token(client, shop, path):
    missing = client.get(path)
    assert missing.status_code == 401 and missing.headers["WWW-Authenticate"] == 'Bearer realm="c360"'
    wrong = client.get(path, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and 'error="invalid_token"' in wrong.headers["WWW-Authenticate"]
    assert client.get(path, headers=shop.auth).status_code == 200


def test_counts_only_include_the_tokens_shop(client, shop):
    _seed_shop_b()
    stats = client.get("/api/v1/stats", headers=shop.auth).get_json()
    assert stats["profiles"] == 0 and stats["orders"] == 0


def test_search_never_finds_another_shops_customer(client, shop):
    _seed_shop_b()
    found = client.get(f"/api/v1/profiles?q={SECRET_NAME}", headers=shop.auth).get_json()
    assert found["profiles"] == []
    assert (
        client.get(f"/api/v1/profiles?identifier=email:{SECRET_EMAIL}", headers=shop.auth).status_code == 404
    )


def test_the_database_refuses_a_send_that_points_at_another_shops_profile(db):
    from sqlalchemy.exc import IntegrityError

    from app.models import OutboxItem

    a, b = make_shop("alpha.myshopify.com"), make_shop("bravo.myshopify.com")
    theirs = Profile(shop_id=b.id)
    db.session.add(theirs)
    db.session.commit()
    db.session.add(
        Message(shop_id=a.id, profile_id=theirs.id, channel="email", source="manual", status="sent")
    )
    with pytest.raises(IntegrityError):
        db.session.flush()
    db.session.rollback()
    mine = Message(shop_id=b.id, profile_id=theirs.id, channel="email", source="manual", status="sent")
    db.session.add(mine)
    db.session.flush()
    db.session.add(OutboxItem(shop_id=a.id, message_id=mine.id, channel="email", recipient="x", payload={}))
    with pytest.raises(IntegrityError):
        db.session.flush()
    db.session.rollback()
