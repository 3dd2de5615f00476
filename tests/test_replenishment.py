"""Replenishment and the next best action: products a customer is due to reorder, and what to do now."""

from __future__ import annotations

import datetime as dt
import itertools

import pandas as pd
import pytest

from app.analytics.replenishment import product_intervals
from app.extensions import db
from app.models import OrderLine, ProductInterval, Profile
from app.models.base import utcnow
from app.services import recommendations, replenishment
from tests.enrichment_helpers import add_order, add_profile
from tests.helpers import make_shop

DAY = dt.timedelta(days=1)
T = dt.datetime(2026, 1, 1, 9, tzinfo=dt.UTC)
LATER = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)


def _intervals(*rows, domain: str = "beans.myshopify.com") -> pd.DataFrame:
    """The intervals measured on a new shop whose orders are ``(customer, product, title, placed_at)``,
    one line each."""
    shop = make_shop(domain)
    people: dict[int, Profile] = {}
    for who, product, title, at in rows:
        person = people.get(who) or people.setdefault(who, add_profile(shop.id, first_name=f"P{who}"))
        _buy(person, product, at, title=title)
    db.session.commit()
    return product_intervals(shop.id, LATER)


def test_a_products_interval_is_the_median_gap_between_one_customers_purchases(db):
    found = _intervals(
        (1, "beans", "Beans", T),
        (1, "beans", "Beans", T + 28 * DAY),
        (1, "beans", "Beans", T + 58 * DAY),
        (2, "beans", "Beans", T + 10 * DAY),
        (2, "beans", "Coffee beans 1kg", T + 66 * DAY),  # the newest line's title names the product
    )
    row = found.set_index("product_id").loc["beans"]
    # Gaps 28, 30 and 56 days: the median is 30.
    assert (row.median_days, row.gaps, row.buyers, row.title) == (30.0, 3, 2, "Coffee beans 1kg")


def test_an_even_number_of_gaps_has_the_mean_of_the_middle_two_as_median(db):
    found = _intervals(
        *[(1, "tea", "Tea", T + d * DAY) for d in (0, 10, 30)],
        *[(2, "tea", "Tea", T + d * DAY) for d in (0, 7, 40)],
    )
    # Gaps 10, 20, 7 and 33: the middle two are 10 and 20.
    assert found.set_index("product_id").loc["tea"].median_days == 15.0


def test_lines_of_one_product_on_one_day_are_one_purchase_not_a_repurchase(db):
    found = _intervals(
        *[(p, "soap", "Soap", T + h * dt.timedelta(hours=1)) for p in (1, 2) for h in range(3)],
        (1, "soap", "Soap", T + 10 * DAY),
        (2, "soap", "Soap", T + 12 * DAY),
        (2, "soap", "Soap", T + 24 * DAY),
    )
    row = found.set_index("product_id").loc["soap"]
    assert (row.median_days, row.gaps) == (12.0, 3)


@pytest.mark.parametrize(
    "rows",
    [
        # One customer's habit, however regular, is not the shop's pattern.
        [(1, "tea", "Tea", T + n * 7 * DAY) for n in range(6)],
        # Two buyers, two gaps: too few to tell a habit from chance.
        [(p, "tea", "Tea", T + n * 7 * DAY) for p in (1, 2) for n in range(2)],
        # Nobody buys a sofa twice.
        [(p, "sofa", "Sofa", T) for p in range(10)],
        # Two loyal customers of twenty-one rebuy the shirt: a favourite, not a consumable.
        [(p, "shirt", "Shirt", T + n * 60 * DAY) for p in (1, 2) for n in range(3)]
        + [(p, "shirt", "Shirt", T) for p in range(3, 22)],
    ],
)
def test_a_product_without_enough_repurchases_has_no_interval(db, rows):
    assert _intervals(*rows).empty


def test_no_purchases_give_no_intervals(db):
    assert _intervals().empty


def _reference(rows) -> dict[str, tuple]:
    """The module's rules written plainly over the rows (what the SQL must answer)."""
    days: dict[tuple, set] = {}
    for who, product, _title, at in rows:
        days.setdefault((product, who), set()).add((at - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)).days)
    out = {}
    for product in {p for p, _ in days}:
        gaps, buyers, everyone = [], set(), set()
        for (p, who), seen in days.items():
            if p == product:
                everyone.add(who)
                ordered = sorted(seen)
                mine = [b - a for a, b in itertools.pairwise(ordered)]
                gaps += mine
                buyers.update([who] if mine else [])
        if len(gaps) >= 3 and len(buyers) >= 2 and len(buyers) >= 0.2 * len(everyone):
            out[product] = (float(pd.Series(gaps).median()), len(gaps), len(buyers))
    return out


@pytest.mark.parametrize("seed", range(8))
def test_the_database_measures_what_the_rules_say_on_random_histories(db, seed):
    import random

    rng = random.Random(seed)
    rows = [
        (rng.randrange(12), rng.choice("abcd"), "x", T + dt.timedelta(hours=rng.randrange(24 * 120)))
        for _ in range(rng.randrange(20, 80))
    ]
    found = _intervals(*rows)
    measured = {r.product_id: (r.median_days, r.gaps, r.buyers) for r in found.itertuples()}
    assert measured == _reference(rows)


def test_another_shops_orders_are_not_measured(db):
    regular = [(p, "beans", "Beans", T + n * 30 * DAY) for p in (1, 2) for n in range(3)]
    _intervals(*regular, domain="other.myshopify.com")
    assert _intervals((1, "beans", "Beans", T)).empty


# --------------------------------------------------------------------------- the database


def _buy(
    profile: Profile, product_id: str, at: dt.datetime, *, title: str = "Beans", cancelled: bool = False
):
    order = add_order(profile, at, cancelled=cancelled)
    db.session.add(
        OrderLine(shop_id=profile.shop_id, order_id=order.id, product_id=product_id, title=title, quantity=1)
    )
    db.session.flush()
    return order


def _regulars(shop_id: int, product_id: str = "0123", every: int = 30, start: dt.datetime | None = None):
    """Two customers who buy the product every ``every`` days, three times each: four gaps."""
    start = start or utcnow() - dt.timedelta(days=200)
    people = []
    for name in ("Ann", "Bea"):
        person = add_profile(shop_id, first_name=name)
        for n in range(3):
            _buy(person, product_id, start + dt.timedelta(days=every * n), title="Coffee beans")
        people.append(person)
    return people


def test_enrichment_measures_the_shops_intervals_and_replaces_the_last_runs(runner, db):
    shop = make_shop("beans.myshopify.com")
    _regulars(shop.id)
    stale = ProductInterval(shop_id=shop.id, product_id="gone", median_days=3, gaps=9, buyers=3)
    db.session.add(stale)
    db.session.commit()
    assert runner.invoke(args=["enrich", "--shop", shop.domain]).exit_code == 0
    rows = db.session.query(ProductInterval).filter_by(shop_id=shop.id).all()
    # The product id "0123" stays text through PostgreSQL's CSV read (not the number 123).
    assert [(r.product_id, r.title, r.median_days, r.gaps, r.buyers) for r in rows] == [
        ("0123", "Coffee beans", 30.0, 4, 2)
    ]


def test_cancelled_orders_are_not_purchases(runner, db):
    shop = make_shop("beans.myshopify.com")
    ann, bea = _regulars(shop.id)
    for person in (ann, bea):
        _buy(person, "0123", utcnow() - dt.timedelta(days=185), cancelled=True)
    db.session.commit()
    assert runner.invoke(args=["enrich", "--shop", shop.domain]).exit_code == 0
    assert db.session.query(ProductInterval).one().median_days == 30.0


def _interval(shop_id: int, product_id: str, days: float, title: str | None = None):
    db.session.add(
        ProductInterval(
            shop_id=shop_id, product_id=product_id, title=title, median_days=days, gaps=5, buyers=3
        )
    )
    db.session.flush()


def test_a_customer_is_due_their_last_purchase_plus_the_interval_soonest_first(db):
    shop = make_shop("beans.myshopify.com")
    now = utcnow()
    ann = add_profile(shop.id)
    _buy(ann, "beans", now - dt.timedelta(days=40))
    _buy(ann, "beans", now - dt.timedelta(days=10))  # the last purchase counts
    _buy(ann, "soap", now - dt.timedelta(days=20))
    _buy(ann, "sofa", now - dt.timedelta(days=5))  # no interval: never due
    _interval(shop.id, "beans", 30, "Beans")
    _interval(shop.id, "soap", 21, "Soap")
    items = replenishment.due_items(shop.model, ann, now)
    assert [(i["product_id"], i["title"]) for i in items] == [("soap", "Soap"), ("beans", "Beans")]
    assert abs(items[0]["due_at"] - (now + dt.timedelta(days=1))) < dt.timedelta(seconds=1)
    assert abs(items[1]["due_at"] - (now + dt.timedelta(days=20))) < dt.timedelta(seconds=1)


def test_a_product_more_than_one_interval_overdue_has_lapsed_and_is_left_out(db):
    shop = make_shop("beans.myshopify.com")
    now = utcnow()
    ann = add_profile(shop.id)
    _buy(ann, "beans", now - dt.timedelta(days=50))  # due 20 days ago: overdue, kept
    _buy(ann, "soap", now - dt.timedelta(days=50))  # due 29 days ago, lapsed 8 days ago
    _interval(shop.id, "beans", 30)
    _interval(shop.id, "soap", 21)
    assert [i["product_id"] for i in replenishment.due_items(shop.model, ann, now)] == ["beans"]


def test_another_customers_purchases_and_another_shops_intervals_do_not_count(db):
    shop, other = make_shop("beans.myshopify.com"), make_shop("other.myshopify.com")
    now = utcnow()
    ann, bea = add_profile(shop.id), add_profile(shop.id)
    _buy(bea, "beans", now - dt.timedelta(days=10))
    _buy(ann, "soap", now - dt.timedelta(days=10))
    _interval(shop.id, "beans", 30)
    _interval(other.id, "soap", 21)
    assert replenishment.due_items(shop.model, ann, now) == []


def test_plans_without_predictions_get_no_replenishment_not_a_guess(db):
    shop = make_shop("beans.myshopify.com", plan="starter")
    ann = add_profile(shop.id)
    _buy(ann, "beans", utcnow() - dt.timedelta(days=10))
    _interval(shop.id, "beans", 30)
    assert replenishment.due_items(shop.model, ann) is None


# --------------------------------------------------------------------------- the next best action


def _due(days: float, now: dt.datetime, title: str | None = "Beans"):
    return [{"product_id": "7", "title": title, "due_at": now + dt.timedelta(days=days)}]


def test_an_unsubscribed_customer_is_never_to_be_messaged_whatever_else_is_due():
    now = utcnow()
    gone = Profile(globally_unsubscribed=True, churn_risk=0.6, lifecycle_stage="loyal")
    assert recommendations.next_best_action(gone, _due(1, now), now)["code"] == "do_not_contact"


def test_a_product_due_within_a_week_or_overdue_is_the_next_best_action():
    now = utcnow()
    ann = Profile(globally_unsubscribed=False, churn_risk=0.2, lifecycle_stage="loyal")
    soon = recommendations.next_best_action(ann, _due(3, now), now)
    assert soon["code"] == "replenish" and soon["text"].startswith(
        "Remind them to reorder Beans: it is due on "
    )
    late = recommendations.next_best_action(ann, _due(-3, now, title=None), now)
    assert late["text"].startswith("Remind them to reorder product 7: it was due on ")
    # Due in three weeks: the churn band's action until then.
    assert recommendations.next_best_action(ann, _due(21, now), now)["code"] == "healthy"


def test_a_churned_customer_gets_the_win_back_not_a_reorder_reminder():
    now = utcnow()
    lost = Profile(globally_unsubscribed=False, churn_risk=0.9, lifecycle_stage="churned")
    assert recommendations.next_best_action(lost, _due(1, now), now)["code"] == "likely_lost"


def test_nothing_is_recommended_before_the_first_scoring_or_for_an_erased_profile():
    now = utcnow()
    assert recommendations.next_best_action(Profile(globally_unsubscribed=False), None, now) is None
    erased = Profile(globally_unsubscribed=False, churn_risk=0.2, erased_at=now)
    assert recommendations.next_best_action(erased, None, now) is None


def test_the_profile_api_and_the_customer_page_show_the_action_and_what_is_due(client, auth, db):
    shop = make_shop("beans.myshopify.com")
    now = utcnow()
    ann = add_profile(shop.id, churn_risk=0.2, lifecycle_stage="loyal")
    _buy(ann, "beans", now - dt.timedelta(days=28), title="Beans")
    _interval(shop.id, "beans", 30, "Beans")
    db.session.commit()
    doc = client.get(f"/api/v1/profiles/{ann.id}", headers=shop.auth).get_json()
    assert doc["next_best_action_code"] == "replenish" and doc["next_best_action"].startswith("Remind them")
    assert [(i["product_id"], i["title"]) for i in doc["replenishment"]] == [("beans", "Beans")]
    assert dt.datetime.fromisoformat(doc["replenishment"][0]["due_at"]) > now
    auth.login_as(shop)
    page = client.get(f"/customers/{ann.id}/predictions", headers={"HX-Request": "true"}).get_data(
        as_text=True
    )
    assert "Next best action:" in page and "Due to reorder" in page and "Beans" in page


def test_the_profile_api_answers_null_replenishment_on_plans_without_predictions(client, db):
    shop = make_shop("beans.myshopify.com", plan="free")
    ann = add_profile(shop.id, churn_risk=0.8, lifecycle_stage="at_risk")
    db.session.commit()
    doc = client.get(f"/api/v1/profiles/{ann.id}", headers=shop.auth).get_json()
    assert doc["replenishment"] is None
    assert doc["next_best_action_code"] == "likely_lost" and doc["next_best_action"].startswith("Last-chance")
