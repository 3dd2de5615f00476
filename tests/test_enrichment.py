"""Whole-shop enrichment: CLI, API with job progress, backtests, spend net of refunds."""

from __future__ import annotations

import datetime as dt
import math

import pytest
import sqlalchemy as sa

from app.extensions import db
from app.models import Event, JobRun, Profile, RollupSnapshot
from app.models.base import utcnow
from tests.enrichment_helpers import add_event, add_order
from tests.enrichment_helpers import add_profile as _add_profile
from tests.helpers import make_shop


def _now():
    return utcnow()


def _ago(days: float) -> dt.datetime:
    return utcnow() - dt.timedelta(days=days)


def add_profile(shop_id: int, **kw) -> Profile:
    return _add_profile(shop_id, now=utcnow(), **kw)


def _small_shop(shop_id: int) -> dict[str, Profile]:
    """Four people: a loyal buyer, a lapsed buyer, a browser and a newcomer."""
    loyal = add_profile(shop_id, first_name="Lou", seen_days_ago=100)
    add_order(loyal, _ago(100), "80.00")
    add_order(loyal, _ago(40), "60.00", refunded="20.00")
    add_order(loyal, _ago(10), "40.00", channel="pos", location_id="3001")
    add_order(loyal, _ago(5), "999.00", cancelled=True)
    lapsed = add_profile(shop_id, first_name="Lars", seen_days_ago=120)
    add_order(lapsed, _ago(120), "200.00")
    browser = add_profile(shop_id, first_name="Bea", seen_days_ago=20)
    add_event(browser, "page_viewed", _ago(20))
    add_event(browser, "email.opened", _ago(30), "email")
    add_event(browser, "email.clicked", _ago(0.01), "email")
    add_event(browser, "email.delivered", _ago(1), "email")
    newcomer = add_profile(shop_id, first_name="Nell", seen_days_ago=0.5)
    db.session.commit()
    return {"loyal": loyal, "lapsed": lapsed, "browser": browser, "newcomer": newcomer}


def _reload(p: Profile) -> Profile:
    db.session.expire_all()
    return db.session.get(Profile, p.id)


def test_cli_enrich_scores_every_profile(runner, shop):
    people = _small_shop(shop.id)
    result = runner.invoke(args=["enrich", "--shop", shop.domain])
    assert result.exit_code == 0, result.output
    assert "enriched 4 profiles" in result.output
    loyal, lapsed = _reload(people["loyal"]), _reload(people["lapsed"])
    browser, newcomer = _reload(people["browser"]), _reload(people["newcomer"])
    assert [
        loyal.lifecycle_stage,
        lapsed.lifecycle_stage,
        browser.lifecycle_stage,
        newcomer.lifecycle_stage,
    ] == ["loyal", "churned", "engaged", "new"]
    # Net spend: 80 + (60 − 20) + 40, the cancelled 999 left out; 3 orders, one at POS.
    assert (loyal.order_count, float(loyal.lifetime_spend), loyal.pos_count) == (3, 160.0, 1)
    assert (float(loyal.pos_spend), loyal.preferred_location) == (40.0, "3001")
    # R: 10 days → 5; F among 2 buyers: 3 orders → 1+⌊5·1/2⌋ = 3; M: AOV 53.33 < 200 → 1.
    assert (loyal.rfm_r, loyal.rfm_f, loyal.rfm_m, loyal.rfm_code) == (5, 3, 1, "5-3-1")
    assert (lapsed.rfm_r, lapsed.rfm_f, lapsed.rfm_m) == (2, 1, 3)
    assert browser.rfm_code is None
    # Churn: Lou's last live order is 10 days ago (the cancelled one 5 days ago does not count).
    assert loyal.churn_risk == round(0.6 * 10 / 90 + 0.25 * (5 - 3) / 4 + 0.15 * (5 - 1) / 4, 3)
    assert lapsed.churn_risk == round(0.6 * 1 + 0.25 * 1 + 0.15 * (5 - 3) / 4, 3)
    # Engagement: click now (3) + page view 20 days ago (0.5·2^(−20/30)) + open 30 days ago (1·½).
    activity = 3 * 2 ** (-0.01 / 30) + 0.5 * 2 ** (-20 / 30) + 0.5
    assert browser.engagement_score == round(100 * (1 - math.exp(-activity / 10)), 1)
    assert newcomer.engagement_score == 0.0
    # Pro plan: predictions present. Shop rate (2 reorders + 5) / (100 + 120 days + 5 · 180) = 1/160
    # a day; Lou's (2 + 1) / (100 + 160): a gap of 260/3 days after the last order.
    assert loyal.predicted_next_order_at is not None and loyal.predicted_ltv_90d is not None
    assert abs((loyal.predicted_next_order_at - _ago(10 - 260 / 3)).total_seconds()) < 120
    assert shop.model.first_enrichment_at is not None


def test_first_run_sets_stages_silently_and_later_changes_are_events(runner, shop):
    people = _small_shop(shop.id)
    runner.invoke(args=["enrich", "--shop", shop.domain])
    assert (
        db.session.scalar(
            sa.select(sa.func.count()).select_from(Event).where(Event.type == "lifecycle.changed")
        )
        == 0
    )
    newcomer = _reload(people["newcomer"])
    add_order(newcomer, _ago(0.1), "30.00")
    db.session.commit()
    runner.invoke(args=["enrich", "--shop", shop.domain])
    events = db.session.scalars(sa.select(Event).where(Event.type == "lifecycle.changed")).all()
    assert [(e.profile_id, e.properties["from"], e.properties["to"]) for e in events] == [
        (newcomer.id, "new", "converted")
    ]


def test_as_of_recomputes_stages_as_they_were_on_that_date(runner, shop):
    people = _small_shop(shop.id)
    as_of = (_now() - dt.timedelta(days=50)).date().isoformat()
    result = runner.invoke(args=["enrich", "--shop", shop.domain, "--as-of", as_of])
    assert result.exit_code == 0, result.output
    assert f"as of {as_of}" in result.output
    loyal, lapsed = _reload(people["loyal"]), _reload(people["lapsed"])
    # 50 days ago Lou had one order (100 days ago, ~49 quiet days) and Lars one at ~69 quiet days.
    assert (loyal.lifecycle_stage, loyal.order_count >= 1) == ("at_risk", True)
    assert lapsed.lifecycle_stage == "at_risk"
    # People first seen after the date are left alone, and a backtest is not the first full run.
    assert _reload(people["newcomer"]).enriched_at is None
    assert shop.model.first_enrichment_at is None


def test_after_a_backtest_the_next_sweep_puts_the_present_back_without_announcing_it(runner, shop, drain):
    from app.models import Event
    from app.services.enrichment import enrich_due

    people = _small_shop(shop.id)
    assert runner.invoke(args=["enrich", "--shop", shop.domain]).exit_code == 0
    assert enrich_due() == 0  # enriched today
    as_of = (_now() - dt.timedelta(days=50)).date().isoformat()
    assert runner.invoke(args=["enrich", "--shop", shop.domain, "--as-of", as_of]).exit_code == 0
    assert _reload(people["lapsed"]).lifecycle_stage == "at_risk"  # as it was 50 days ago
    assert enrich_due() == 1  # the minute sweep: the present again
    drain()
    assert _reload(people["lapsed"]).lifecycle_stage == "churned"
    changed = db.session.scalar(
        sa.select(sa.func.count()).select_from(Event).where(Event.type == "lifecycle.changed")
    )
    assert changed == 0  # neither the backtest's moves nor their undoing were the customers'
    assert enrich_due() == 0


def test_enrich_refuses_a_bad_date_and_an_unknown_shop(runner, shop):
    assert (
        "not an ISO date" in runner.invoke(args=["enrich", "--shop", shop.domain, "--as-of", "soon"]).output
    )
    ancient = runner.invoke(args=["enrich", "--shop", shop.domain, "--as-of", "0001-01-01"])
    assert ancient.exit_code != 0 and "as_of must be 1970 or later" in ancient.output
    assert runner.invoke(args=["enrich", "--shop", "nope.myshopify.com"]).exit_code != 0
    assert runner.invoke(args=["enrich"]).exit_code != 0


def test_free_plan_gets_no_predictions(runner, db):
    free = make_shop("free.myshopify.com", plan="free")
    people = _small_shop(free.id)
    runner.invoke(args=["enrich", "--all"])
    loyal = _reload(people["loyal"])
    assert loyal.rfm_code and loyal.predicted_ltv_90d is None and loyal.predicted_next_order_at is None


def test_api_run_reports_progress_until_done(client, shop, other_shop, drain):
    _small_shop(shop.id)
    response = client.post("/api/v1/enrichment/run", headers=shop.auth)
    assert response.status_code == 202
    job_id = response.get_json()["job_id"]
    drain()
    job = client.get(f"/api/v1/jobs/{job_id}", headers=shop.auth).get_json()
    assert (job["status"], job["progress"], job["total"], job["error"]) == ("done", 4, 4, None)
    assert job["result"]["stages"] == {"loyal": 1, "churned": 1, "engaged": 1, "new": 1}
    assert client.get(f"/api/v1/jobs/{job_id}", headers=other_shop.auth).status_code == 404
    snap = db.session.scalar(sa.select(RollupSnapshot).where(RollupSnapshot.shop_id == shop.id))
    assert snap.data["rfm_grid"]["5-3"]["count"] == 1 and sum(snap.data["churn_bands"].values()) == 4


def test_a_bare_as_of_date_is_the_end_of_that_day_in_the_shops_zone_and_today_is_now():
    from app.services.enrichment import parse_as_of

    # 23:59:59 on the 31st in Los Angeles is 06:59:59 UTC on the 1st: its evening orders belong.
    assert parse_as_of("2026-10-31", "America/Los_Angeles").isoformat() == "2026-11-01T06:59:59+00:00"
    assert parse_as_of("20261031") == parse_as_of("2026-10-31")  # the compact form is the same day
    today = parse_as_of(_now().date().isoformat(), "UTC")
    assert abs((today - _now()).total_seconds()) < 5  # its end is still to come: now


def test_api_rejects_a_bad_as_of(client, shop):
    response = client.post("/api/v1/enrichment/run", json={"as_of": "yesterday"}, headers=shop.auth)
    assert response.status_code == 422
    assert response.get_json()["error"]["code"] == "invalid"
    future = (_now() + dt.timedelta(days=3)).date().isoformat()
    assert client.post("/api/v1/enrichment/run", json={"as_of": future}, headers=shop.auth).status_code == 422
    # A body that is not JSON is refused, not read as "no date" and run over the whole shop.
    broken = client.post(
        "/api/v1/enrichment/run", data="{bad", content_type="application/json", headers=shop.auth
    )
    assert broken.status_code == 400 and broken.get_json()["error"]["code"] == "bad_json"


def test_a_failed_run_records_its_error(app, shop, monkeypatch):
    from app.services import enrichment

    run, _ = enrichment.create_run(shop.model)

    def boom(*_a, **_k):
        raise RuntimeError("database went away")

    monkeypatch.setattr(enrichment.loaders, "load_profiles", boom)
    try:
        enrichment.run_enrichment(shop.id, run.id)
    except RuntimeError:
        pass
    row = db.session.get(JobRun, run.id)
    assert row.status == "failed" and "database went away" in row.error


def test_profile_api_shows_scores_after_enrichment(client, shop, drain):
    people = _small_shop(shop.id)
    client.post("/api/v1/enrichment/run", headers=shop.auth)
    drain()
    doc = client.get(f"/api/v1/profiles/{people['loyal'].id}", headers=shop.auth).get_json()
    assert doc["lifecycle_stage"] == "loyal" and doc["rfm"]["code"] == "5-3-1"
    # 0.6·10/90 + 0.25·2/4 + 0.15·4/4 = 0.342: drifting.
    assert doc["churn_band"] == "drifting" and doc["enriched_at"] is not None
    assert doc["predicted_ltv_90d"] > 0 and doc["predicted_next_order_at"] is not None
    assert doc["orders"]["lifetime_spend"] == 160.0 and doc["orders"]["pos"]["preferred_location"] == 3001


def test_shop_with_only_storefront_views_scores_engagement(runner, db):
    views = make_shop("views.myshopify.com")
    p = add_profile(views.id, first_name="Vi", seen_days_ago=3)
    add_event(p, "page_viewed", _ago(3))
    add_event(p, "product_viewed", _ago(0))
    add_event(p, "email.sent", _ago(0), "email")  # a send is not the person's doing
    db.session.commit()
    result = runner.invoke(args=["enrich", "--shop", views.domain])
    assert result.exit_code == 0, result.output
    p = _reload(p)
    activity = 0.5 * 2 ** (-3 / 30) + 1.0
    assert p.engagement_score == round(100 * (1 - math.exp(-activity / 10)), 1)
    assert p.lifecycle_stage == "engaged"


def test_an_event_a_century_old_decays_to_nothing_instead_of_failing_the_run(runner, shop):
    # Stored before ingest refused times before 1970: PostgreSQL raised on exp() underflow.
    people = _small_shop(shop.id)
    add_event(people["browser"], "email.clicked", dt.datetime(1900, 1, 1, tzinfo=dt.UTC), "email")
    db.session.commit()
    result = runner.invoke(args=["enrich", "--shop", shop.domain])
    assert result.exit_code == 0, result.output
    assert _reload(people["browser"]).engagement_score is not None


def test_an_empty_shop_enriches_to_nothing_and_counts_as_backfilled(runner, shop):
    result = runner.invoke(args=["enrich", "--shop", shop.domain])
    assert result.exit_code == 0, result.output
    assert "enriched 0 profiles" in result.output
    assert shop.model.first_enrichment_at is not None


def test_a_profile_ingest_touches_during_the_run_keeps_its_fresher_stage(shop, monkeypatch):
    from app.analytics import loaders
    from app.services import enrichment
    from app.services.lifecycle import refresh_lifecycle

    people = _small_shop(shop.id)
    runner_read = loaders.load_event_stats

    def read_then_ingest(*args):
        frame = runner_read(*args)
        newcomer = db.session.get(Profile, people["newcomer"].id)
        add_order(newcomer, _ago(0), "25.00")  # an order arrives mid-run
        refresh_lifecycle(shop.model, newcomer, utcnow())
        db.session.commit()
        return frame

    monkeypatch.setattr(loaders, "load_event_stats", read_then_ingest)
    run, _ = enrichment.create_run(shop.model)
    run = enrichment.run_enrichment(shop.id, run.id)
    assert run.result["written"] == 3
    assert _reload(people["newcomer"]).lifecycle_stage == "converted"


def test_nightly_all_shops_can_be_queued_for_workers(runner, shop, other_shop, drain):
    _small_shop(shop.id)
    result = runner.invoke(args=["enrich", "--all", "--queue"])
    assert result.exit_code == 0, result.output
    assert (
        f"{shop.domain}: queued job" in result.output and f"{other_shop.domain}: queued job" in result.output
    )
    drain()
    runs = db.session.scalars(sa.select(JobRun).order_by(JobRun.shop_id)).all()
    assert [(r.shop_id, r.status) for r in runs] == [(shop.id, "done"), (other_shop.id, "done")]


def test_the_minute_sweep_enriches_each_shop_once_a_day(runner, shop, other_shop, drain):
    from app.services.enrichment import enrich_due
    from workers.ingest import sweep_once

    _small_shop(shop.id)
    backtest = runner.invoke(args=["enrich", "--shop", shop.domain, "--as-of", _ago(30).date().isoformat()])
    assert backtest.exit_code == 0, backtest.output  # a backtest is not the day's run
    sweep_once()
    drain()
    runs = db.session.scalars(sa.select(JobRun).order_by(JobRun.shop_id, JobRun.created_at)).all()
    daily = [(r.shop_id, r.status) for r in runs if r.result.get("as_of") is None]
    assert daily == [(shop.id, "done"), (other_shop.id, "done")]
    assert _reload(_small_shop_profiles(shop.id)["Lou"]).lifecycle_stage == "loyal"
    assert enrich_due() == 0  # the same day: nothing more
    assert enrich_due(now=utcnow() + dt.timedelta(hours=25)) == 2
    drain()


def _small_shop_profiles(shop_id: int) -> dict[str, Profile]:
    found = db.session.scalars(sa.select(Profile).where(Profile.shop_id == shop_id)).all()
    return {p.first_name: p for p in found}


def test_the_daily_enrichment_can_be_left_to_cron(app, shop, drain, monkeypatch):
    from workers.ingest import sweep_once

    monkeypatch.setitem(app.config, "C360_DAILY_ENRICHMENT", False)
    sweep_once()
    drain()
    assert db.session.scalar(sa.select(sa.func.count()).select_from(JobRun)) == 0


def test_activity_dated_a_little_ahead_counts_as_now_not_as_never(runner, shop):
    """Ingest takes an order dated up to a day ahead (a till's clock) and a pixel event minutes
    ahead; the run of the present dropped them as future, and a buyer of an hour ago became
    "new" with churn risk 1.0."""
    buyer = add_profile(shop.id, first_name="Ahead", seen_days_ago=-0.5)
    add_order(buyer, _ago(-0.5), "50.00")
    browser = add_profile(shop.id, first_name="Early", seen_days_ago=-0.005)
    add_event(browser, "page_viewed", _ago(-0.005))
    add_event(browser, "page_viewed", _ago(3))
    db.session.commit()
    assert runner.invoke(args=["enrich", "--shop", shop.domain]).exit_code == 0
    buyer, browser = _reload(buyer), _reload(browser)
    assert (buyer.lifecycle_stage, buyer.rfm_r) == ("converted", 5)
    # Quiet for no days: only F and M (a lone buyer's 1s) weigh on the risk.
    assert buyer.churn_risk == round(0.25 * (5 - buyer.rfm_f) / 4 + 0.15 * (5 - buyer.rfm_m) / 4, 3)
    assert browser.lifecycle_stage == "engaged" and browser.churn_risk < 1.0
    # A page view counts at its full weight, never more: 0.5 now + 0.5·2^(−3/30).
    activity = 0.5 + 0.5 * 2 ** (-3 / 30)
    assert browser.engagement_score == round(100 * (1 - math.exp(-activity / 10)), 1)


def test_a_misspelt_as_of_is_refused_instead_of_running_a_live_recompute(client, shop):
    """``{"asof": …}`` answered 202 and recomputed today, where the caller meant a backtest."""
    answer = client.post("/api/v1/enrichment/run", headers=shop.auth, json={"asof": "2026-01-31"})
    assert answer.status_code == 422 and "unknown field 'asof'" in answer.get_json()["error"]["message"]
    assert db.session.scalar(sa.select(sa.func.count()).select_from(JobRun)) == 0


def test_a_run_whose_job_failed_before_starting_is_failed_and_not_reused(shop, monkeypatch):
    """The job failed at its first read (the worker's session broken): the run stayed "queued",
    every new request was given it back for two hours, and nothing ran."""
    from sqlalchemy.exc import OperationalError

    import workers.enrichment as job
    from app.services import enrichment

    run, fresh = enrichment.create_run(shop.model)
    assert fresh

    def first_read_fails(*args):
        raise OperationalError("SELECT job_runs", {}, Exception("server closed the connection"))

    monkeypatch.setattr(enrichment, "_start", first_read_fails)
    with pytest.raises(OperationalError):
        job.enrich_shop(shop.id, run.id)
    failed = db.session.get(JobRun, run.id)
    assert failed.status == "failed" and "server closed the connection" in failed.error
    again, fresh = enrichment.create_run(shop.model)
    assert fresh and again.id != run.id


def test_a_run_queued_long_ago_and_never_started_is_not_reused(shop):
    """Its job was lost (a worker killed): a new request queues a new one."""
    from app.services import enrichment

    lost, _ = enrichment.create_run(shop.model)
    lost.created_at = utcnow() - enrichment.QUEUED_STALE_AFTER - dt.timedelta(minutes=1)
    db.session.commit()
    again, fresh = enrichment.create_run(shop.model)
    assert fresh and again.id != lost.id
    same, fresh = enrichment.create_run(shop.model)
    assert not fresh and same.id == again.id
