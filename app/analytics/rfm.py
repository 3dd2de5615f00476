"""RFM: recency, frequency and monetary scores 1–5 and the "R-F-M" code.

* R is absolute, by days since the last order (``R_BANDS``): 5 = within
  30 days, 4 = 31–60, 3 = 61–90, 2 = 91–180, 1 = more than 180.
* F (order count) and M (average order value, net of refunds and
  cancellations) are quintiles of the shop's buyers: a buyer scores
  ``1 + ⌊5 · share of buyers with a strictly lower value⌋``, so the top
  20 % score 5 and equal customers always get equal scores (a tie never
  splits across a boundary).

People who never bought have no RFM (all None).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from app.analytics.validate import require_columns

# (highest day count inclusive, score), checked in order.
R_BANDS: tuple[tuple[int, int], ...] = ((30, 5), (60, 4), (90, 3), (180, 2))


def recency_of(days: int) -> int:
    """R for one buyer from whole days since their last order (``recency_score`` for one)."""
    return next((score for upper, score in R_BANDS if days <= upper), 1)


def recency_score(days: pd.Series) -> pd.Series:
    """R from whole days since the last order (NaN → NaN)."""
    edges = [-np.inf] + [upper for upper, _ in R_BANDS] + [np.inf]
    labels = [score for _, score in R_BANDS] + [1]
    scores = pd.cut(days, bins=edges, labels=labels, right=True)
    return pd.Series(scores.astype("float"), index=days.index)


def quintile_score(values: pd.Series) -> pd.Series:
    """1–5 by the share of values strictly lower; ties share a score (NaN stays NaN)."""
    present = values.dropna()
    if present.empty:
        return pd.Series(np.nan, index=values.index)
    lower = present.rank(method="min") - 1  # how many are strictly lower
    scores = 1 + np.floor(5 * lower / len(present))
    return scores.clip(1, 5).reindex(values.index)


def rfm_scores(buyers: pd.DataFrame) -> pd.DataFrame:
    """R, F, M for a frame with ``days_since_order``, ``orders`` and ``aov`` (buyers only).

    Rows with no orders get NaN scores; quintiles are taken among the rows
    with at least one order.
    """
    require_columns(buyers, ("days_since_order", "orders", "aov"), "rfm input")
    is_buyer = buyers["orders"] > 0
    out = pd.DataFrame(index=buyers.index)
    out["rfm_r"] = recency_score(buyers["days_since_order"].where(is_buyer))
    out["rfm_f"] = quintile_score(buyers["orders"].where(is_buyer).astype("float"))
    out["rfm_m"] = quintile_score(buyers["aov"].where(is_buyer).astype("float"))
    return out
