"""RFM with ties, churn-risk components, the engagement score and predictions (hand-computed)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from app.analytics.churn import band_bounds, band_of, churn_components, churn_risk
from app.analytics.engagement import decay, engagement_score
from app.analytics.predictions import predict
from app.analytics.rfm import quintile_score, recency_score, rfm_scores
from app.errors import ValidationFailed


def test_r_bands_by_days_since_last_order():
    days = pd.Series([0, 30, 31, 60, 61, 90, 91, 180, 181, 900, np.nan])
    assert recency_score(days).tolist()[:-1] == [5, 5, 4, 4, 3, 3, 2, 2, 1, 1]
    assert math.isnan(recency_score(days).iloc[-1])


def test_quintiles_give_the_top_fifth_a_five():
    scores = quintile_score(pd.Series(range(1, 11), dtype=float))
    assert scores.tolist() == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]


def test_equal_customers_get_equal_scores_on_a_small_shop_with_ties():
    # 8 one-order buyers and 2 two-order buyers: 0 lower → 1; 8 of 10 lower → 1 + ⌊4⌋ = 5.
    orders = pd.Series([1] * 8 + [2] * 2, dtype=float)
    assert quintile_score(orders).tolist() == [1] * 8 + [5] * 2
    # Values 10, 20, 20, 20, 50: lower counts 0, 1, 1, 1, 4 → 1, 2, 2, 2, 5.
    assert quintile_score(pd.Series([10.0, 20, 20, 20, 50])).tolist() == [1, 2, 2, 2, 5]


def test_rfm_uses_average_order_value_and_skips_non_buyers():
    frame = pd.DataFrame(
        {
            "days_since_order": [5.0, 40, 100, np.nan],
            "orders": [4, 1, 2, 0],
            "aov": [25.0, 100.0, 50.0, np.nan],
        }
    )
    out = rfm_scores(frame)
    # F among 3 buyers: 4 orders → 2 lower → 1+⌊10/3⌋ = 4; 1 order → 1; 2 orders → 1+⌊5/3⌋ = 2.
    assert out.loc[0].tolist() == [5, 4, 1]
    assert out.loc[1].tolist() == [4, 1, 4]
    assert out.loc[2].tolist() == [2, 2, 2]
    assert out.loc[3].isna().all()


def test_churn_components_are_weighted_60_25_15():
    frame = pd.DataFrame(
        {
            "days_since_activity": [45.0, 0, 200, np.nan],
            "rfm_f": [3, 5, 1, np.nan],
            "rfm_m": [1, 5, 1, np.nan],
        }
    )
    parts = churn_components(frame, churned_days=90)
    assert parts.loc[0].tolist() == [0.5, 0.5, 1.0]
    risk = churn_risk(frame, 90)
    assert risk.tolist() == [round(0.6 * 0.5 + 0.25 * 0.5 + 0.15 * 1.0, 3), 0.0, 1.0, 1.0]


def test_churn_bands_and_their_actions():
    assert [band_of(v).key for v in (0.0, 0.299, 0.3, 0.499, 0.5, 0.699, 0.7, 1.0)] == [
        "healthy",
        "healthy",
        "drifting",
        "drifting",
        "at_risk",
        "at_risk",
        "likely_lost",
        "likely_lost",
    ]
    assert band_of(None) is None
    assert "win" in band_of(0.6).action.lower()
    assert band_bounds("drifting") == (0.3, 0.5)
    with pytest.raises(ValidationFailed):
        band_bounds("doomed")


def test_engagement_score_halves_an_events_weight_every_thirty_days():
    assert decay(0) == 1.0 and decay(30) == 0.5 and decay(60) == 0.25
    scores = engagement_score(pd.Series([0.0, 10.0, 5.0, np.nan]))
    assert scores.tolist() == [
        0.0,
        round(100 * (1 - math.exp(-1)), 1),
        round(100 * (1 - math.exp(-0.5)), 1),
        0.0,
    ]
    with pytest.raises(ValidationFailed):
        engagement_score(pd.Series([-1.0]))


def test_predictions_weigh_each_buyers_rate_against_the_shops():
    t = pd.Timestamp("2026-01-01", tz="UTC")
    frame = pd.DataFrame(
        {
            "orders": [3, 2, 1, 0],
            "occasions": [3, 2, 1, 0],
            "first_order_at": [t, t, t, pd.NaT],
            "last_order_at": [t + pd.Timedelta(days=60), t + pd.Timedelta(days=10), t, pd.NaT],
            "days_since_order": [0.0, 50.0, 60.0, np.nan],  # as of t + 60 days
            "aov": [40.0, 20.0, 30.0, np.nan],
            "churn_risk": [0.5, 0.0, 0.2, 1.0],
        }
    )
    out = predict(frame)
    # Shop rate (2 + 1 + 0 reorders + 5) / (60 + 60 + 60 days + 5 · 180) = 1/135 a day; each buyer
    # (reorders + 1) / (60 days + 135): 3/195, 2/195, 1/195, so gaps of 65, 97.5 and 195 days.
    assert out["predicted_next_order_at"].tolist()[:3] == [
        t + pd.Timedelta(days=125),
        t + pd.Timedelta(days=107, hours=12),
        t + pd.Timedelta(days=195),
    ]
    # Order value against the shop's 190/6: (120 + 31.67)/4, (40 + 31.67)/3, (30 + 31.67)/2;
    # × 90 days · rate × (1 − churn).
    shop_aov = 190 / 6
    expected = [
        90 * 3 / 195 * (120 + shop_aov) / 4 * 0.5,
        90 * 2 / 195 * (40 + shop_aov) / 3,
        90 * 1 / 195 * (30 + shop_aov) / 2 * 0.8,
    ]
    assert out["predicted_ltv_90d"].tolist()[:3] == [round(x, 2) for x in expected]
    assert pd.isna(out["predicted_next_order_at"].iloc[3]) and pd.isna(out["predicted_ltv_90d"].iloc[3])


def test_two_orders_an_hour_apart_are_one_occasion_not_a_daily_habit():
    """A split checkout predicted a $7,083 quarter from a $200 history."""
    t = pd.Timestamp("2026-01-01", tz="UTC")
    frame = pd.DataFrame(
        {
            "orders": [2, 2, 1],
            "occasions": [1, 2, 1],  # the split checkout's two orders fall on one day
            "first_order_at": [t, t, t],
            "last_order_at": [t + pd.Timedelta(hours=1), t + pd.Timedelta(days=30), t],
            "days_since_order": [30 - 1 / 24, 0.0, 30.0],  # as of t + 30 days
            "aov": [100.0, 50.0, 10.0],
            "churn_risk": [0.0, 0.0, 0.0],
        }
    )
    out = predict(frame)
    # Shop rate (0 + 1 + 0 + 5) / (3 · 30 + 900) = 1/165; the split checkout has no reorder, so
    # its rate is the one-order buyer's: 1 / (30 + 165) a day.
    assert out["predicted_next_order_at"].iloc[0] == t + pd.Timedelta(hours=1) + pd.Timedelta(days=195)
    assert out["predicted_next_order_at"].iloc[2] == t + pd.Timedelta(days=195)
    assert out["predicted_ltv_90d"].iloc[0] == round(90 / 195 * (200 + 62) / 3, 2)
    alone = predict(frame.iloc[[0, 2]])  # no true repeat buyer: no prediction, not a guess
    assert alone["predicted_ltv_90d"].isna().all()


def test_a_quick_reorder_on_a_young_shop_predicts_a_plausible_quarter():
    """Two $500 orders 25 hours apart in a shop of three buyers predicted $38,880 in 90 days
    (86 orders), and lent their one-day gap to the two one-order buyers ($5,100 each)."""
    t = pd.Timestamp("2026-11-30", tz="UTC")
    frame = pd.DataFrame(
        {
            "orders": [2, 1, 1],
            "occasions": [2, 1, 1],
            "first_order_at": [t - pd.Timedelta(hours=25), t, t],
            "last_order_at": [t, t, t],
            "days_since_order": [0.0, 0.0, 0.0],
            "aov": [500.0, 100.0, 100.0],
            "churn_risk": [0.0, 0.0, 0.0],
        }
    )
    out = predict(frame)
    ltv = out["predicted_ltv_90d"].tolist()
    assert ltv[0] < 1000 and ltv[1] < 200  # less than they have spent: a quarter, not a lifetime
    gaps = (out["predicted_next_order_at"] - t) / pd.Timedelta(days=1)
    # The shop has no rhythm of its own yet (two orders a year); a reorder a day later halves it.
    assert gaps.iloc[0] > 60 and (gaps.iloc[1:] > 120).all()


def test_rfm_refuses_a_frame_without_its_columns():
    with pytest.raises(ValidationFailed):
        rfm_scores(pd.DataFrame({"orders": [1]}))


def test_split_checkouts_beside_a_real_reorder_count_as_one_occasion():
    """One order 25 hours ago and six split checkouts since: six reorders gave a 12-day gap."""
    t = pd.Timestamp("2026-11-30 18:00", tz="UTC")
    frame = pd.DataFrame(
        {
            "orders": [7, 1],
            "occasions": [2, 1],
            "first_order_at": [t - pd.Timedelta(hours=25), t - pd.Timedelta(days=40)],
            "last_order_at": [t, t - pd.Timedelta(days=40)],
            "days_since_order": [0.0, 40.0],
            "aov": [20.0, 20.0],
            "churn_risk": [0.0, 0.0],
        }
    )
    gap = (predict(frame)["predicted_next_order_at"].iloc[0] - t) / pd.Timedelta(days=1)
    # Shop rate (1 + 5) / (25/24 + 40 + 900) a day; the buyer's (1 + 1) / (25/24 + 1/shop rate).
    shop_rate = 6 / (25 / 24 + 40 + 900)
    assert gap == pytest.approx((25 / 24 + 1 / shop_rate) / 2, abs=1e-3)
