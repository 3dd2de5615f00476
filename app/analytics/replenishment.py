"""How often customers buy a product again: each product's typical repurchase interval.

A customer who bought coffee beans every four weeks is due for more four
weeks after their last bag. The interval is the shop's, not the customer's:
one customer's two orders are too few to tell a habit from chance, while
the shop's repeat buyers of a product say how long it lasts.

* A purchase is one customer buying the product on one day: lines of the
  same product in orders placed the same day count once (a split order is
  not a repurchase).
* A gap is the days between a customer's consecutive purchases of the
  product.
* The product's interval is the median gap, once at least ``MIN_GAPS``
  gaps from at least ``MIN_BUYERS`` customers show it, and at least
  ``MIN_REPEAT_SHARE`` of the product's buyers bought it again: coffee is
  bought again by many of its buyers, a shirt by a loyal few, a sofa by
  nobody. Only the first is replenished.

``app.services.replenishment`` turns the intervals into each customer's
due dates: their last purchase of the product plus its interval.
"""

from __future__ import annotations

import pandas as pd

from app.analytics.validate import require_columns

MIN_GAPS = 3
MIN_BUYERS = 2
MIN_REPEAT_SHARE = 0.2
PURCHASE_COLUMNS = ("profile_id", "product_id", "title", "placed_at")
INTERVAL_COLUMNS = ["product_id", "title", "median_days", "gaps", "buyers"]


def product_intervals(purchases: pd.DataFrame) -> pd.DataFrame:
    """One row per product with a repurchase pattern: ``product_id``, ``title``, ``median_days``,
    ``gaps`` and ``buyers`` (the customers whose gaps it was measured on).

    ``purchases`` holds one row per order line: ``profile_id``, ``product_id``, ``title``
    and ``placed_at`` (UTC timestamps). The title is the product's latest.
    """
    require_columns(purchases, PURCHASE_COLUMNS, "replenishment input")
    if purchases.empty:
        return pd.DataFrame(columns=INTERVAL_COLUMNS)
    lines = purchases.dropna(subset=["profile_id", "product_id", "placed_at"])
    titles = lines.sort_values("placed_at").groupby("product_id")["title"].last()
    days = lines.assign(day=lines["placed_at"].dt.floor("D"))
    bought = days.drop_duplicates(["profile_id", "product_id", "day"]).sort_values(
        ["product_id", "profile_id", "day"]
    )
    gap = bought.groupby(["product_id", "profile_id"])["day"].diff() / pd.Timedelta(days=1)
    gaps = bought.assign(gap=gap).dropna(subset=["gap"])
    stats = gaps.groupby("product_id").agg(
        median_days=("gap", "median"), gaps=("gap", "size"), buyers=("profile_id", "nunique")
    )
    everyone = bought.groupby("product_id")["profile_id"].nunique()
    share = stats["buyers"] / everyone.reindex(stats.index)
    stats = stats[(stats["gaps"] >= MIN_GAPS) & (stats["buyers"] >= MIN_BUYERS) & (share >= MIN_REPEAT_SHARE)]
    out = stats.join(titles).reset_index()
    return out[INTERVAL_COLUMNS]
