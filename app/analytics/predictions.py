"""Predicted next order and 90-day value: a deliberately simple, explainable model.

* Gap — a repeat buyer's own average days between orders,
  ``(last − first) / (orders − 1)``; a one-order buyer gets the shop's
  median gap among repeat buyers (None when the shop has none). Orders
  within a day of each other are one occasion (a split or repeated
  checkout, not a daily habit): a buyer whose orders all fall within a
  day counts as a one-order buyer, so two orders an hour apart no longer
  predict a purchase a day.
* Next order — the last order plus the gap (it may lie in the past:
  the customer is overdue).
* 90-day value — expected orders in 90 days (``90 / gap``) × average
  order value × (1 − churn risk): customers slipping away are worth less.

Non-buyers get no prediction. Plans without the ``predictions``
capability get None for both (the caller leaves them out, never guesses).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from app.analytics.validate import require_columns

HORIZON_DAYS = 90
MIN_GAP_DAYS = 1.0


def order_gaps(frame: pd.DataFrame) -> pd.Series:
    """Average days between orders per buyer, the shop median for one-order buyers."""
    require_columns(frame, ("orders", "first_order_at", "last_order_at"), "prediction input")
    span = (frame["last_order_at"] - frame["first_order_at"]) / pd.Timedelta(days=1)
    repeat = (frame["orders"] >= 2) & (span >= MIN_GAP_DAYS)
    own = (span / (frame["orders"] - 1)).where(repeat).clip(lower=MIN_GAP_DAYS)
    shop_median = own.median() if repeat.any() else np.nan
    one_occasion = (frame["orders"] >= 1) & ~repeat
    return own.where(repeat, pd.Series(shop_median, index=frame.index).where(one_occasion))


def predict(frame: pd.DataFrame) -> pd.DataFrame:
    """``predicted_next_order_at`` and ``predicted_ltv_90d`` for each row.

    ``frame`` needs ``orders``, ``first_order_at``, ``last_order_at``,
    ``aov`` and ``churn_risk``.
    """
    require_columns(frame, ("aov", "churn_risk"), "prediction input")
    gap = order_gaps(frame)
    out = pd.DataFrame(index=frame.index)
    # To the second: a gap in float days gave 15:59:59.999986 for 16:00, and a day before a midnight.
    out["predicted_next_order_at"] = (frame["last_order_at"] + pd.to_timedelta(gap, unit="D")).dt.round("s")
    expected_orders = HORIZON_DAYS / gap
    out["predicted_ltv_90d"] = (expected_orders * frame["aov"] * (1 - frame["churn_risk"])).round(2)
    return out
