"""``c360 backfill`` resolves the whole history first, then applies the orders in batches.

Its people, orders, counters and consents are those of applying each order on its
own in time order, as ``orders/create`` webhooks arriving live would (the reference
below), whatever the order of the file's lines; except for what a history import
does not make: the automatic merges (its profiles are born merged) and their events.
(The names an order gives its buyer are taken in the file's order, as before: here
each buyer keeps one name.)
"""

from __future__ import annotations

import json
import random
from datetime import datetime

import pytest
import sqlalchemy as sa

from app.errors import DomainError
from app.extensions import db
from app.models import Merge, Order, Shop
from app.services.ingest import backfill
from app.services.ingest.orders import apply_order
from bench.ingest import order_body
from tests.helpers import make_shop, statements
from tests.ingest_support import fixture
from tests.test_ingest_batch import snapshot


def history(seed: int = 5) -> list[str]:
    """Orders of 12 customers, shuffled: guest checkouts that later get an account, a changed
    email kept by the account, a shared family phone, a newer version and a stale one, bad lines."""
    rng = random.Random(seed)
    orders = []
    for i in range(60):
        p = i % 12
        body = order_body(i, p, f"buyer{p}@mail.uk", f"2026-09-{1 + i // 3:02d}T{i % 24:02d}:00:00Z")
        if i % 7 == 0:  # a guest checkout: the email alone
            del body["customer"]
        if p == 3 and i > 30:  # the customer changed email; the account stays
            body["email"] = body["customer"]["email"] = "new-buyer3@mail.uk"
        if p in (5, 6):  # one family phone on two accounts: a candidate, never a merge
            body["phone"] = "+447700900777"
        orders.append(body)
    newer = dict(orders[4], updated_at="2026-10-20T10:00:00Z", cancelled_at="2026-10-20T10:00:00Z")
    stale = dict(orders[4], updated_at="2026-09-01T00:00:00Z", total_price="999.00")
    lines = [json.dumps(o) for o in [*orders, newer, stale]]
    lines += [
        json.dumps(fixture(f"shopify/{name}.json")) for name in ("orders_create_web", "orders_create_guest")
    ]
    rng.shuffle(lines)
    return [*lines, "{not json", json.dumps({"id": 9}), ""]


def in_time_order(lines: list[str]) -> list[str]:
    """The orders as they happened (last changed, else created); what is not an order last."""

    def when(line: str) -> str:
        try:
            body = json.loads(line)
            return datetime.fromisoformat(body.get("updated_at") or body["created_at"]).isoformat()
        except (ValueError, KeyError, TypeError):
            return "~"

    return sorted(lines, key=when)


def one_by_one(shop: Shop, lines: list[str]) -> None:
    """The reference: each line applied on its own savepoint, as the import did before."""
    for line in lines:
        try:
            with db.session.begin_nested():
                apply_order(shop, json.loads(line), None)
        except (ValueError, DomainError):
            pass
    db.session.commit()


def without_merges(state: dict) -> dict:
    state["events"] = [e for e in state["events"] if not e[0].startswith("merge-")]
    return state


@pytest.mark.parametrize("batch", [7, 200])
def test_a_backfill_ends_as_the_orders_applied_one_by_one(app, db, monkeypatch, batch):
    monkeypatch.setattr(backfill, "BATCH", batch)
    lines = history()
    reference = db.session.get(Shop, make_shop(f"ref{batch}.myshopify.com").id)
    one_by_one(reference, in_time_order(lines))
    shop = db.session.get(Shop, make_shop(f"fill{batch}.myshopify.com").id)
    told = []
    result = backfill.backfill_orders(shop, lambda: iter(lines), progress=told.append)
    assert result.applied == len(lines) - 3
    assert [n for n, _ in result.failed] == [len(lines) - 2, len(lines) - 1]
    assert sum(told) == len(lines)
    assert without_merges(snapshot(shop.id)) == without_merges(snapshot(reference.id))
    assert db.session.scalar(sa.select(sa.func.count(Merge.id)).where(Merge.shop_id == shop.id)) == 0
    cancelled = db.session.scalar(
        sa.select(Order.cancelled_at).where(Order.shop_id == shop.id, Order.external_id == str(100004))
    )
    assert cancelled is not None  # the newer version won over the stale one after it


def test_a_backfill_resolves_its_buyers_in_a_few_statements_not_a_round_of_queries_per_order(app, db):
    """A fresh shop's history is one in-memory pass: its identity writes do not grow with the orders."""

    def resolving(n: int, name: str) -> int:
        shop = db.session.get(Shop, make_shop(name).id)
        lines = [json.dumps(order_body(i, i, f"b{i}@mail.uk", "2026-09-01T10:00:00Z")) for i in range(n)]
        with statements() as sent:
            backfill.backfill_orders(shop, lambda: iter(lines))
        return sum(
            1 for s in sent if "identifiers" in s.split("(")[0] or "identifier_links" in s.split("(")[0]
        )

    assert resolving(40, "few.myshopify.com") == resolving(8, "fewer.myshopify.com")


def test_a_batch_the_database_refuses_is_redone_line_by_line(app, db, monkeypatch):
    """One order that fails in the batch is told apart: the others are applied all the same."""
    lines = history()
    shop = db.session.get(Shop, make_shop("redo.myshopify.com").id)
    real = backfill.apply_run

    def refusing(shop, run):
        raise RuntimeError("lock timeout")

    monkeypatch.setattr(backfill, "apply_run", refusing)
    result = backfill.backfill_orders(shop, lambda: iter(lines))
    monkeypatch.setattr(backfill, "apply_run", real)
    assert result.applied == len(lines) - 3
    reference = db.session.get(Shop, make_shop("redo-ref.myshopify.com").id)
    one_by_one(reference, in_time_order(lines))
    assert without_merges(snapshot(shop.id)) == without_merges(snapshot(reference.id))


def test_an_imported_order_refunded_later_dates_its_buyer_by_the_purchase_not_the_refund(app, db):
    """The history's order was bought on 1 August and refunded on 1 October (its updated_at):
    the buyer was last seen buying, in August."""
    from app.models import Profile

    shop = db.session.get(Shop, make_shop("dated.myshopify.com").id)
    body = order_body(1, 1, "aug@mail.uk", "2026-08-01T10:00:00Z")
    body["updated_at"] = "2026-10-01T10:00:00Z"
    result = backfill.backfill_orders(shop, lambda: iter([json.dumps(body)]))
    assert result.applied == 1
    profile = db.session.scalar(sa.select(Profile).where(Profile.shop_id == shop.id))
    assert profile.last_seen_at.isoformat().startswith("2026-08-01")


def test_a_line_refused_for_its_date_or_total_leaves_no_profile_behind(app, db):
    from app.models import Identifier

    shop = db.session.get(Shop, make_shop("refused.myshopify.com").id)
    bad_date = order_body(1, 1, "baddate@mail.uk", "2026-08-01T10:00:00Z")
    bad_date["created_at"] = "2026-13-45T00:00:00Z"
    bad_total = order_body(2, 2, "badtotal@mail.uk", "2026-08-01T10:00:00Z")
    bad_total["total_price"] = "abc"
    del bad_total["total_price_set"]
    good = order_body(3, 3, "good@mail.uk", "2026-08-01T10:00:00Z")
    lines = [json.dumps(b) for b in (bad_date, bad_total, good)]
    result = backfill.backfill_orders(shop, lambda: iter(lines))
    assert result.applied == 1 and [n for n, _ in result.failed] == [1, 2]
    emails = set(db.session.scalars(sa.select(Identifier.value).where(Identifier.kind == "email")))
    assert emails == {"good@mail.uk"}


def test_a_backfill_stages_its_buyers_quietly(app, db):
    """History is no news: the import sets each buyer's stage without a lifecycle.changed event
    for every customer (journeys start on them)."""
    from app.models import Event, Profile

    shop = db.session.get(Shop, make_shop("quiet.myshopify.com").id)
    lines = [json.dumps(order_body(i, i, f"q{i}@mail.uk", "2026-08-01T10:00:00Z")) for i in range(3)]
    assert backfill.backfill_orders(shop, lambda: iter(lines)).applied == 3
    stages = set(db.session.scalars(sa.select(Profile.lifecycle_stage).where(Profile.shop_id == shop.id)))
    assert stages == {"churned"}  # staged: four months since their only order
    changed = sa.select(sa.func.count()).select_from(Event).where(Event.type == "lifecycle.changed")
    assert db.session.scalar(changed) == 0
