"""A profile's lifecycle stage moves with every signal that changes what it is read from.

A visitor's return, a support touch or a full refund of a marketplace order moved the
profile's last seen or its order count without the stage following until the nightly
enrichment: a shopper browsing right now stayed "at risk" (a win-back journey's audience),
a refunded buyer stayed "converted".
"""

from __future__ import annotations

import copy
import datetime as dt

from app.extensions import db
from app.models import WebhookDelivery
from app.models.base import utcnow
from app.services.ingest import process_delivery_row
from app.services.ingest.inbox import store_delivery
from tests.ingest_support import doc_of, fixture, ishop_fixture, post_pixel

ishop = ishop_fixture


def iso(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.000Z")


def page_view(client, clientid: str, at: dt.datetime, n: int) -> None:
    body = copy.deepcopy(fixture("pixel/page_viewed.json"))
    body.update({"id": f"pv-{n}", "clientId": clientid, "timestamp": iso(at)})
    assert post_pixel(client, body).status_code in (200, 202)


def event(client, ishop, n: int, at: dt.datetime, kind: str = "support.contacted", **extra) -> None:
    body = {
        "id": f"e{n}",
        "type": kind,
        "occurred_at": at.isoformat(),
        "identifiers": {"email": "touch@mail.uk"},
        **extra,
    }
    assert client.post("/api/v1/events", json=body, headers=ishop.auth).status_code == 202


def marketplace(client, ishop, n: int, at: dt.datetime, order_id: str, amount: float, *, refund=False):
    """An Amazon order of ``amount`` GBP placed (or refunded) through ``POST /events``."""
    kind, key = ("order.refunded", "amount") if refund else ("order.placed", "total")
    props = {"marketplace": "amazon", "order_id": order_id, key: amount, "currency": "GBP"}
    event(client, ishop, n, at, kind, channel="marketplace", properties=props)


def test_a_visitor_who_comes_back_another_day_is_engaged_at_once(client, ishop, drain):
    now = utcnow()
    page_view(client, "c-back", now - dt.timedelta(days=9), 1)
    drain()
    assert doc_of(ishop, "web_client", "c-back")["lifecycle_stage"] == "new"
    page_view(client, "c-back", now - dt.timedelta(hours=1), 2)
    drain()
    assert doc_of(ishop, "web_client", "c-back")["lifecycle_stage"] == "engaged"


def test_a_customer_at_risk_who_gets_in_touch_today_is_no_longer_at_risk(client, ishop, drain):
    now = utcnow()
    event(client, ishop, 1, now - dt.timedelta(days=60), channel="support")
    drain()
    assert doc_of(ishop, "email", "touch@mail.uk")["lifecycle_stage"] == "at_risk"
    event(client, ishop, 2, now - dt.timedelta(minutes=5), channel="support")
    drain()
    assert doc_of(ishop, "email", "touch@mail.uk")["lifecycle_stage"] != "at_risk"


def test_a_buyer_whose_only_marketplace_order_is_refunded_in_full_is_no_longer_converted(
    client, ishop, drain
):
    now = utcnow() - dt.timedelta(days=1)
    marketplace(client, ishop, 1, now, "111-222", 25)
    drain()
    assert doc_of(ishop, "email", "touch@mail.uk")["lifecycle_stage"] == "converted"
    marketplace(client, ishop, 2, now + dt.timedelta(hours=1), "111-222", 25, refund=True)
    drain()
    doc = doc_of(ishop, "email", "touch@mail.uk")
    assert doc["orders"]["count"] == 0 and doc["lifecycle_stage"] != "converted"


def _scored_lost_buyer(client, ishop, drain, runner):
    """A buyer of 100 days ago, enriched: R 2, churn risk 0.7 or more (likely lost)."""
    then = utcnow() - dt.timedelta(days=100)
    marketplace(client, ishop, 1, then, "111-100", 25)
    drain()
    assert runner.invoke(args=["enrich", "--shop", ishop.domain]).exit_code == 0
    doc = doc_of(ishop, "email", "touch@mail.uk")
    assert doc["churn_risk"] >= 0.7 and doc["rfm"]["r"] == 2
    return doc


def _order_now(client, ishop, n: int) -> None:
    marketplace(client, ishop, n, utcnow() - dt.timedelta(minutes=5), f"111-{n}", 25)


def test_a_likely_lost_buyer_who_orders_again_is_rescored_at_once_not_at_the_next_run(
    client, ishop, drain, runner
):
    """R and churn risk's recency read the profile's own moments: a buyer of five minutes ago
    stayed "likely lost" (a last-chance win-back) until the nightly run."""
    before = _scored_lost_buyer(client, ishop, drain, runner)
    _order_now(client, ishop, 2)
    drain()
    doc = doc_of(ishop, "email", "touch@mail.uk")
    assert doc["rfm"]["r"] == 5
    # Recency 0; F and M as the last run left them.
    f, m = before["rfm"]["f"], before["rfm"]["m"]
    assert doc["churn_risk"] == round(0.25 * (5 - f) / 4 + 0.15 * (5 - m) / 4, 3) < 0.7


def test_the_row_by_row_path_rescores_too(client, ishop, drain, runner):
    """The path a batch falls back to when the database refuses it (``process_delivery_row``)."""
    _scored_lost_buyer(client, ishop, drain, runner)
    props = {"marketplace": "amazon", "order_id": "111-3", "total": 25, "currency": "GBP"}
    body = {
        "id": "e3",
        "type": "order.placed",
        "occurred_at": (utcnow() - dt.timedelta(minutes=5)).isoformat(),
        "identifiers": {"email": "touch@mail.uk"},
        "channel": "marketplace",
        "properties": props,
    }
    stored = store_delivery(ishop.model, "api", "order.placed", "e3", body)
    process_delivery_row(ishop.model, db.session.get(WebhookDelivery, stored.delivery_id))
    db.session.commit()
    doc = doc_of(ishop, "email", "touch@mail.uk")
    assert doc["orders"]["count"] == 2 and doc["rfm"]["r"] == 5 and doc["churn_risk"] < 0.7


def test_a_merge_with_someone_active_today_rescores_the_survivor(client, ishop, drain, runner):
    """The loser's visit of today is the survivor's: its recency is no longer 100 days."""
    _scored_lost_buyer(client, ishop, drain, runner)
    body = {
        "id": "t-1",
        "type": "support.contacted",
        "occurred_at": utcnow().isoformat(),
        "identifiers": {"email": "other@mail.uk"},
        "channel": "support",
    }
    assert client.post("/api/v1/events", json=body, headers=ishop.auth).status_code == 202
    drain()
    lost, active = doc_of(ishop, "email", "touch@mail.uk"), doc_of(ishop, "email", "other@mail.uk")
    merged = client.post(
        f"/api/v1/profiles/{lost['id']}/merge", json={"other_id": active["id"]}, headers=ishop.auth
    )
    assert merged.status_code == 201, merged.get_json()
    doc = doc_of(ishop, "email", "touch@mail.uk")
    assert doc["id"] == lost["id"] and doc["churn_risk"] < 0.7


def test_a_new_visitors_two_days_in_one_pixel_batch_make_them_engaged(client, ishop, drain):
    """Sent in one batch, the visits of 3 days and 1 day ago left first seen and last seen two days
    apart and the stage at "new"; sent one by one they made "engaged"."""
    now = utcnow()
    batch = []
    for n, days in enumerate((3, 1)):
        body = copy.deepcopy(fixture("pixel/page_viewed.json"))
        body.update(
            {"id": f"pvb-{n}", "clientId": "c-batch", "timestamp": iso(now - dt.timedelta(days=days))}
        )
        batch.append(body)
    assert post_pixel(client, batch).status_code in (200, 202)
    drain()
    assert doc_of(ishop, "web_client", "c-batch")["lifecycle_stage"] == "engaged"


def test_a_buyer_whose_only_order_is_refunded_in_full_loses_their_rfm_at_once(client, ishop, drain, runner):
    """Rescored live with the last run's F and M, a non-buyer stayed 5-1-3 and "healthy"."""
    now = utcnow() - dt.timedelta(days=1)
    marketplace(client, ishop, 1, now, "111-400", 400)
    drain()
    assert runner.invoke(args=["enrich", "--shop", ishop.domain]).exit_code == 0
    assert doc_of(ishop, "email", "touch@mail.uk")["rfm"]["code"] is not None
    marketplace(client, ishop, 2, now + dt.timedelta(hours=1), "111-400", 400, refund=True)
    drain()
    doc = doc_of(ishop, "email", "touch@mail.uk")
    assert doc["rfm"] == {"r": None, "f": None, "m": None, "code": None}
    # Last active a day ago (a refund is not the customer's doing); no F or M: both count in full.
    assert doc["churn_risk"] == round(0.6 * 1 / 90 + 0.25 + 0.15, 3)
