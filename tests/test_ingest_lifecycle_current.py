"""A profile's lifecycle stage moves with every signal that changes what it is read from.

A visitor's return, a support touch or a full refund of a marketplace order moved the
profile's last seen or its order count without the stage following until the nightly
enrichment: a shopper browsing right now stayed "at risk" (a win-back journey's audience),
a refunded buyer stayed "converted".
"""

from __future__ import annotations

import copy
import datetime as dt

from app.models.base import utcnow
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
    props = {"marketplace": "amazon", "order_id": "111-222", "total": 25, "currency": "GBP"}
    event(client, ishop, 1, now, "order.placed", channel="marketplace", properties=props)
    drain()
    assert doc_of(ishop, "email", "touch@mail.uk")["lifecycle_stage"] == "converted"
    refund = {"marketplace": "amazon", "order_id": "111-222", "amount": 25, "currency": "GBP"}
    event(
        client,
        ishop,
        2,
        now + dt.timedelta(hours=1),
        "order.refunded",
        channel="marketplace",
        properties=refund,
    )
    drain()
    doc = doc_of(ishop, "email", "touch@mail.uk")
    assert doc["orders"]["count"] == 0 and doc["lifecycle_stage"] != "converted"
