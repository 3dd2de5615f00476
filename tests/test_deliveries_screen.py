"""The Failed deliveries screen: every failed delivery reachable a page at a time, retries that say
what came of them, Retry all bounded in a request, and who may see and act."""

from __future__ import annotations

import re
from html import unescape
from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest
import sqlalchemy as sa

from app.extensions import db
from app.models import WebhookDelivery
from app.services.ingest.inbox import store_delivery
from tests.ingest_support import fixture, flaky_fixture, ishop_fixture

ishop = ishop_fixture
flaky = flaky_fixture


def dead_rows(shop, count: int, prefix: str = "dlq") -> list[int]:
    """``count`` dead pixel deliveries of ``shop`` (bodies that process once retried), oldest first."""
    ids = []
    for n in range(count):
        event = fixture("pixel/page_viewed.json")
        event["id"] = f"{prefix}-{n}"
        ids.append(store_delivery(shop.model, "pixel", event["name"], event["id"], event).delivery_id)
    db.session.execute(
        sa.update(WebhookDelivery)
        .where(WebhookDelivery.id.in_(ids))
        .values(status="dead", attempts=5, last_error="OperationalError: lock timeout")
    )
    db.session.commit()
    return ids


def listed(html: str) -> list[int]:
    return [int(i) for i in re.findall(r'action="/deliveries/(\d+)/retry"', html)]


def pager_link(html: str, label: str) -> str | None:
    found = re.search(rf'href="(/deliveries/\?[^"]+)"[^>]*>[^<]*{label}', html)
    return unescape(found.group(1)) if found else None


def test_the_failed_deliveries_page_reaches_every_failed_delivery_a_page_at_a_time(client, auth, ishop):
    """At most 200 rows and no paging: with "dead 207" the 7 oldest could be neither seen nor retried."""
    ids = dead_rows(ishop, 207)
    auth.login_as(ishop)
    html = client.get("/deliveries/").get_data(as_text=True)
    assert "Showing 1–100 of 207" in html and pager_link(html, "Newer") is None
    seen = listed(html)
    assert seen == sorted(ids, reverse=True)[:100]
    older = pager_link(html, "Older")
    page2 = client.get(older, headers={"HX-Request": "true"}).get_data(as_text=True)
    assert "<html" not in page2 and "Showing 101–200 of 207" in page2
    page3 = client.get(pager_link(page2, "Older")).get_data(as_text=True)
    assert "<html" in page3 and "Showing 201–207 of 207" in page3 and pager_link(page3, "Older") is None
    seen += listed(page2) + listed(page3)
    assert seen == sorted(ids, reverse=True)  # every one, once, newest first
    back = client.get(pager_link(page3, "Newer"), headers={"HX-Request": "true"}).get_data(as_text=True)
    assert listed(back) == listed(page2)


def test_a_retry_from_a_later_page_answers_that_page(client, auth, ishop):
    ids = dead_rows(ishop, 120)
    auth.login_as(ishop)
    older = pager_link(client.get("/deliveries/").get_data(as_text=True), "Older")
    cursor = dict(parse_qsl(urlsplit(older).query))
    oldest = ids[0]
    plain = client.post(f"/deliveries/{oldest}/retry", data=cursor)
    assert plain.status_code == 303 and urlsplit(plain.headers["Location"]).query == urlencode(cursor)
    fragment = client.post(f"/deliveries/{ids[1]}/retry", data=cursor, headers={"HX-Request": "true"})
    html = fragment.get_data(as_text=True)
    assert "Showing 101–118 of 118" in html and ids[2] in listed(html) and ids[1] not in listed(html)


def test_a_page_cursor_that_is_no_row_reads_the_first_page(client, auth, ishop):
    dead_rows(ishop, 3)
    auth.login_as(ishop)
    for query in ("before=0", "after=99999999999999999999999", "before=-5", "after=x", f"before={2**63}"):
        response = client.get(f"/deliveries/?{query}")
        assert response.status_code == 200 and "Showing 1–3 of 3" in response.get_data(as_text=True), query


HX = {"HX-Request": "true"}


class WorkerQueue:
    """A queue whose jobs a ``c360 worker`` runs later (RQ's shape): it only records them."""

    runs_inline = False

    def __init__(self):
        self.jobs: list[tuple[str, tuple]] = []

    def enqueue(self, func_path, *args, job_id=None, queue="default"):
        self.jobs.append((func_path, args))
        return job_id

    def enqueue_once(self, key, func_path, *args, queue="default", ttl=60):
        return self.enqueue(func_path, *args, queue=queue)

    def enqueue_in(self, delay_seconds, func_path, *args, **kwargs):
        return None

    def release_once(self, key):
        return None

    def check_reachable(self):
        return None


@pytest.fixture()
def embedded(app, monkeypatch):
    """Jobs run in the request, as with no REDIS_URL (whatever this test run's queue is)."""
    from app.jobs import InProcessQueue

    monkeypatch.setitem(app.extensions, "rq", InProcessQueue())


@pytest.fixture()
def worker_queue(app, monkeypatch) -> WorkerQueue:
    queue = WorkerQueue()
    monkeypatch.setitem(app.extensions, "rq", queue)
    return queue


def statuses() -> dict[str, int]:
    db.session.expire_all()
    rows = db.session.execute(
        sa.select(WebhookDelivery.status, sa.func.count()).group_by(WebhookDelivery.status)
    )
    return dict(rows.all())


def test_a_retry_that_ran_at_once_says_it_was_processed(client, auth, ishop, embedded):
    [dead] = dead_rows(ishop, 1)
    auth.login_as(ishop)
    html = client.post(f"/deliveries/{dead}/retry", headers=HX).get_data(as_text=True)
    assert f"Delivery {dead} processed." in html and "queued" not in html


def test_a_retry_that_ran_at_once_and_failed_says_so_with_the_reason(client, auth, ishop, embedded, flaky):
    """It said "Delivery 17 queued again." when the retry had already run and failed."""
    flaky["failures"] = 10**6
    [dead] = dead_rows(ishop, 1)
    auth.login_as(ishop)
    html = client.post(f"/deliveries/{dead}/retry", headers=HX).get_data(as_text=True)
    assert f"Delivery {dead} failed again: OperationalError" in html and "lock timeout" in html
    assert "queued" not in html


def test_a_retry_a_worker_will_run_says_it_is_queued(client, auth, ishop, worker_queue):
    [dead] = dead_rows(ishop, 1)
    auth.login_as(ishop)
    html = client.post(f"/deliveries/{dead}/retry", headers=HX).get_data(as_text=True)
    assert f"Delivery {dead} queued again: a worker will process it." in html
    assert [args for _, args in worker_queue.jobs] == [(dead,)]


def test_an_empty_list_with_privacy_requests_waiting_says_they_wait_not_that_all_was_processed(
    client, auth, ishop
):
    from tests.ingest_support import post_shopify

    response = post_shopify(
        client, ishop, "customers/redact", fixture("shopify/customers_redact.json"), "wh-rd"
    )
    assert response.status_code == 200
    auth.login_as(ishop)
    html = client.get("/deliveries/").get_data(as_text=True)
    assert "every delivery was processed" not in html
    assert "1 privacy request waits for the GDPR screen" in html


def test_an_empty_list_with_deliveries_still_queued_does_not_say_every_one_was_processed(
    client, auth, ishop, worker_queue
):
    """After "Retry all" under a worker the list is empty, but nothing is processed yet."""
    dead_rows(ishop, 2)
    auth.login_as(ishop)
    html = client.post("/deliveries/retry-all", headers=HX).get_data(as_text=True)
    assert "every delivery was processed" not in html
    assert "Nothing failed: 2 deliveries are waiting to be processed." in html


def test_a_retry_without_javascript_shows_its_outcome_on_the_page_it_returns_to(
    client, auth, ishop, embedded
):
    [dead] = dead_rows(ishop, 1)
    auth.login_as(ishop)
    response = client.post(f"/deliveries/{dead}/retry")
    assert response.status_code == 303
    assert f"Delivery {dead} processed." in client.get(response.headers["Location"]).get_data(as_text=True)


def test_retry_all_of_one_delivery_says_one_delivery(client, auth, ishop, embedded):
    dead_rows(ishop, 1)
    auth.login_as(ishop)
    html = client.post("/deliveries/retry-all", headers=HX).get_data(as_text=True)
    assert "1 delivery processed." in html and "1 deliveries" not in html


def test_retry_all_counts_what_was_processed_and_what_failed_again_with_its_reason(
    client, auth, ishop, embedded
):
    dead_rows(ishop, 2)
    broken = store_delivery(ishop.model, "api", "order.placed", "bad-1", b'{"type": "order.placed"')
    db.session.get(WebhookDelivery, broken.delivery_id).status = "dead"
    db.session.commit()
    auth.login_as(ishop)
    html = client.post("/deliveries/retry-all", headers=HX).get_data(as_text=True)
    assert "3 deliveries retried: 2 processed, 1 failed again (" in html and "not valid JSON" in html
    assert statuses() == {"processed": 2, "dead": 1}


def test_retry_all_works_one_batch_in_the_request_and_leaves_the_rest_to_the_background(
    app, client, auth, ishop, embedded, monkeypatch
):
    """Every row inline (12 ms each) passed gunicorn's 30 s timeout at about 2,500 rows."""
    from workers.ingest import REQUEST_BATCH, drain_shop

    monkeypatch.setitem(app.config, "C360_INGEST_REQUEST_SECONDS", 0)
    ids = dead_rows(ishop, REQUEST_BATCH + 30)
    auth.login_as(ishop)
    html = client.post("/deliveries/retry-all", headers=HX).get_data(as_text=True)
    later = "30 queued again: the background sweep works them"
    assert f"{REQUEST_BATCH + 30} deliveries retried: {REQUEST_BATCH} processed, {later}." in html
    assert statuses() == {"processed": REQUEST_BATCH, "pending": 30}
    oldest_first = db.session.scalars(
        sa.select(WebhookDelivery.id)
        .where(WebhookDelivery.status == "processed")
        .order_by(WebhookDelivery.id)
    ).all()
    assert oldest_first == ids[:REQUEST_BATCH]
    drain_shop(ishop.id)  # the sweep thread's drain (or the next request's)
    assert statuses() == {"processed": REQUEST_BATCH + 30}


def test_retry_all_with_workers_queues_the_shops_drain_and_works_nothing_in_the_request(
    client, auth, ishop, worker_queue
):
    dead_rows(ishop, 3)
    auth.login_as(ishop)
    response = client.post("/deliveries/retry-all")
    assert response.status_code == 303
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "3 deliveries queued again: a worker will process them." in page
    assert statuses() == {"pending": 3}
    assert worker_queue.jobs == [("workers.ingest.drain_shop", (ishop.id,))]


def test_dlq_retry_all_from_the_cli_works_every_row_whatever_the_request_budget(
    app, runner, ishop, embedded, monkeypatch
):
    from workers.ingest import REQUEST_BATCH

    monkeypatch.setitem(app.config, "C360_INGEST_REQUEST_SECONDS", 0)
    dead_rows(ishop, REQUEST_BATCH + 5)
    result = runner.invoke(args=["dlq", "retry", "--all"])
    assert result.exit_code == 0 and f"{REQUEST_BATCH + 5} deliveries processed." in result.output
    assert statuses() == {"processed": REQUEST_BATCH + 5}


def test_retry_all_past_its_limit_says_how_many_are_left_for_the_next_click(
    client, auth, ishop, embedded, monkeypatch
):
    from workers import dlq

    monkeypatch.setattr(dlq, "RETRY_ALL_LIMIT", 2)
    ids = dead_rows(ishop, 3)
    auth.login_as(ishop)
    html = client.post("/deliveries/retry-all", headers=HX).get_data(as_text=True)
    assert "2 deliveries processed. 1 more failed delivery is left: Retry all again." in html
    assert statuses() == {"processed": 2, "dead": 1} and listed(html) == [ids[2]]


def test_a_support_agent_reads_the_failed_deliveries_without_a_retry_button(client, auth, db):
    """The README: support agents read everything; retrying is staff's, and no button answers 403."""
    from tests.helpers import make_shop

    support = make_shop("helpdesk.myshopify.com", role="support")
    [delivery] = dead_rows(support, 1)
    auth.login(support.owner_email)
    page = client.get("/deliveries/")
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and ">Failed deliveries</a>" in html and "OperationalError" in html
    assert "Retry all" not in html and ">Retry</button>" not in html
    assert client.post(f"/deliveries/{delivery}/retry").status_code == 403
    assert client.post("/deliveries/retry-all").status_code == 403


def test_retry_all_is_a_form_that_works_without_javascript(client, auth, ishop, embedded):
    dead_rows(ishop, 2)
    auth.login_as(ishop)
    html = client.get("/deliveries/").get_data(as_text=True)
    assert re.search(r'<form method="post" action="/deliveries/retry-all"[^>]*>', html)
    answer = client.post("/deliveries/retry-all")
    assert answer.status_code == 303
    assert "2 deliveries processed." in client.get("/deliveries/").get_data(as_text=True)


def test_dlq_list_says_when_there_are_more_than_it_shows(runner, ishop):
    """It stopped at 1,000 rows without a word."""
    ids = dead_rows(ishop, 3)
    listed = runner.invoke(args=["dlq", "list", "--limit", "2"])
    assert listed.exit_code == 0 and f"{ids[-1]:>8}" in listed.output and f"{ids[0]:>8}" not in listed.output
    assert "these are the newest 2" in listed.output
    assert "newest" not in runner.invoke(args=["dlq", "list", "--limit", "3"]).output
