"""The dashboard (onboarding note, charts, R×F grid, fatigue) and the customers list's filters and sorts."""

from __future__ import annotations

import datetime as dt

import pytest

from app.extensions import db
from app.models import ConsentState, Message, Profile
from app.models.base import utcnow
from tests.enrichment_helpers import add_order
from tests.enrichment_helpers import add_profile as _add_profile

HX = {"HX-Request": "true"}


def add_profile(shop_id: int, **kw) -> Profile:
    return _add_profile(shop_id, now=utcnow(), **kw)


def _ago(days: float) -> dt.datetime:
    return utcnow() - dt.timedelta(days=days)


@pytest.fixture()
def populated(shop):
    big = add_profile(shop.id, first_name="Big", seen_days_ago=300)
    for days in (300, 200, 100, 3):
        add_order(big, _ago(days), "500.00")
    small = add_profile(shop.id, first_name="Small", seen_days_ago=150)
    add_order(small, _ago(150), "20.00")
    mid = add_profile(shop.id, first_name="Mid", seen_days_ago=20)
    add_order(mid, _ago(20), "90.00")
    browser = add_profile(shop.id, first_name="Browser", seen_days_ago=2)
    db.session.add(ConsentState(shop_id=shop.id, profile_id=mid.id, channel="email", status="opted_in"))
    for _ in range(8):
        db.session.add(
            Message(shop_id=shop.id, profile_id=mid.id, channel="email", source="campaign", status="sent")
        )
    db.session.commit()
    return {"big": big, "small": small, "mid": mid, "browser": browser}


def test_dashboard_says_backfill_has_not_run_then_when_it_finished(client, auth, shop, populated, drain):
    auth.login_as(shop)
    html = client.get("/dashboard").get_data(as_text=True)
    assert "Backfill before launching" in html and "has <strong>not finished yet</strong>" in html
    response = client.post("/dashboard/enrich", headers=HX)
    assert response.status_code == 200
    drain()
    html = client.get("/dashboard").get_data(as_text=True)
    assert "The first full enrichment finished on" in html
    assert "25%</span> of your list is at fatigue ≥ 0.7" in html  # 1 of 4 has 8 sends in 7 days
    assert 'data-chart="doughnut"' in html and "/static/vendor/chart.umd.js" in html
    # Big: last order 3 days ago (R 5); 2 of 3 buyers have fewer orders → F = 1 + ⌊5·2/3⌋ = 4.
    assert 'title="R5 F4: 1 customers, 2000.00 GBP"' in html


def test_enrichment_progress_partial_stops_polling_when_done(client, auth, shop, populated, drain):
    auth.login_as(shop)
    fragment = client.post("/dashboard/enrich", headers=HX).get_data(as_text=True)
    job_id = fragment.split("/dashboard/jobs/")[1].split('"')[0] if "/dashboard/jobs/" in fragment else None
    drain()
    from app.models import JobRun

    run = db.session.query(JobRun).one()
    assert job_id in (None, run.id)
    done = client.get(f"/dashboard/jobs/{run.id}", headers=HX)
    assert done.status_code == 286 and "4 profiles scored" in done.get_data(as_text=True)
    assert client.get("/dashboard/jobs/nope", headers=HX).status_code == 404


def test_dashboard_stats_block_alone_for_htmx(client, auth, shop, populated):
    auth.login_as(shop)
    html = client.get("/dashboard", headers=HX).get_data(as_text=True)
    assert "Fatigue posture" in html and "<html" not in html


def _names(client, query: str) -> list[str]:
    html = client.get(f"/customers/?{query}", headers=HX).get_data(as_text=True)
    return [
        part.split("<")[0]
        for part in html.split('">')[1:]
        if part.split("<")[0] in {"Big", "Small", "Mid", "Browser"}
    ]


def test_list_filters_by_stage_rfm_churn_band_and_opt_in(client, auth, shop, populated, drain):
    auth.login_as(shop)
    client.post("/api/v1/enrichment/run", headers=shop.auth)
    drain()
    assert _names(client, "stage=loyal") == ["Big"]
    assert _names(client, "stage=churned") == ["Small"]
    # Newest first. R 5: Mid (20 days) and Big (3 days); F and M among 3 buyers: Big 4-4, the others 1.
    assert _names(client, "rfm=5-*-*") == ["Mid", "Big"]
    assert _names(client, "rfm=5-4-4") == ["Big"]
    assert _names(client, "rfm=*-1-*") == ["Mid", "Small"]
    assert _names(client, "optin=email") == ["Mid"]
    big = db.session.get(Profile, populated["big"].id)
    assert big.churn_risk < 0.3
    assert "Big" in _names(client, "churn=healthy") and "Small" in _names(client, "churn=likely_lost")


def test_list_sorts_by_lifetime_value_and_last_order(client, auth, shop, populated):
    auth.login_as(shop)
    assert _names(client, "sort=ltv") == ["Big", "Mid", "Small", "Browser"]
    assert _names(client, "sort=last_order") == ["Big", "Mid", "Small", "Browser"]


def test_list_rejects_a_bad_filter_with_the_reason(client, auth, shop):
    auth.login_as(shop)
    for query in ("stage=zombie", "rfm=9-9-9", "churn=doomed", "optin=fax", "sort=random"):
        response = client.get(f"/customers/?{query}")
        assert response.status_code == 422, query
        assert "must" in response.get_data(as_text=True)


def test_settings_put_lifecycle_on_free_plan_is_403_and_bad_windows_422(client, db):
    from tests.helpers import make_shop

    free = make_shop("free.myshopify.com", plan="free")
    pro = make_shop("pro.myshopify.com", plan="pro")
    body = {"lifecycle": {"at_risk_days": 20, "churned_days": 60}}
    assert client.put("/api/v1/settings", json=body, headers=free.auth).status_code == 403
    bad = {"lifecycle": {"at_risk_days": 60, "churned_days": 60}}
    response = client.put("/api/v1/settings", json=bad, headers=pro.auth)
    assert response.status_code == 422 and "shorter" in response.get_json()["error"]["message"]
    assert (
        client.put("/api/v1/settings", json=body, headers=pro.auth).get_json()["lifecycle"]
        == body["lifecycle"]
    )


def test_support_staff_see_the_dashboard_but_cannot_start_enrichment(client, auth, db):
    from tests.helpers import make_shop

    support = make_shop("support.myshopify.com", role="support")
    auth.login_as(support)
    html = client.get("/dashboard").get_data(as_text=True)
    assert "Backfill before launching" in html and "Run enrichment now" not in html
    assert client.post("/dashboard/enrich", headers=HX).status_code == 403


def test_a_page_past_the_last_says_so_rather_than_that_the_shop_has_no_customers(
    client, auth, shop, populated
):
    auth.login_as(shop)
    past = client.get("/customers/?cursor=99999999999999999999", headers={"HX-Request": "true"})
    html = past.get_data(as_text=True)
    assert past.status_code == 200 and "past the last page" in html and "No customers yet" not in html


def test_churn_bands_are_not_shown_as_counted_before_any_run_and_are_live_after(
    client, auth, shop, populated, runner
):
    """Before the first run the dashboard said "Healthy: 0 … Likely lost: 0" as if computed; after it,
    the bands came from the run's snapshot while ingest rescores churn risk between runs."""
    auth.login_as(shop)
    html = client.get("/dashboard").get_data(as_text=True)
    assert "No enrichment yet: run it to score churn risk." in html and "Healthy: 0" not in html
    assert runner.invoke(args=["enrich", "--shop", shop.domain]).exit_code == 0
    html = client.get("/dashboard").get_data(as_text=True)
    assert "Likely lost: 1" in html  # Small, quiet for 150 days
    mid = db.session.get(Profile, populated["mid"].id)
    mid.churn_risk = 0.9  # as ingest's rescoring would leave it
    db.session.commit()
    assert "Likely lost: 2" in client.get("/dashboard").get_data(as_text=True)


def test_a_backtest_is_dated_by_its_date_and_said_to_be_one(client, auth, shop, populated, runner):
    auth.login_as(shop)
    assert runner.invoke(args=["enrich", "--shop", shop.domain, "--as-of", "2026-01-15"]).exit_code == 0
    html = client.get("/dashboard").get_data(as_text=True)
    assert "as of 15 Jan 2026" in html and "(a backtest: the present comes back with the next run)" in html
    assert runner.invoke(args=["enrich", "--shop", shop.domain]).exit_code == 0
    assert "a backtest" not in client.get("/dashboard").get_data(as_text=True)
