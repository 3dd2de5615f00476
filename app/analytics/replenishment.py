"""How often customers buy a product again: each product's typical repurchase interval.

A customer who bought coffee beans every four weeks is due for more four
weeks after their last bag. The interval is the shop's, not the customer's:
one customer's two orders are too few to tell a habit from chance, while
the shop's repeat buyers of a product say how long it lasts.

* A purchase is one customer buying the product on one day (UTC): lines of
  the same product in orders placed the same day count once (a split order
  is not a repurchase). Cancelled orders are not purchases.
* A gap is the days between a customer's consecutive purchases of the
  product.
* The product's interval is the median gap, once at least ``MIN_GAPS``
  gaps from at least ``MIN_BUYERS`` customers show it, and at least
  ``MIN_REPEAT_SHARE`` of the product's buyers bought it again: coffee is
  bought again by many of its buyers, a shirt by a loyal few, a sofa by
  nobody. Only the first is replenished.

The whole computation runs in the database (one statement, both dialects):
a store with millions of order lines sends back one row per product, not
its lines. ``app.services.replenishment`` turns the intervals into each
customer's due dates: their last purchase of the product plus its interval.
"""

from __future__ import annotations

import datetime as dt

import pandas as pd
import sqlalchemy as sa

from app.extensions import db

MIN_GAPS = 3
MIN_BUYERS = 2
MIN_REPEAT_SHARE = 0.2
INTERVAL_COLUMNS = ["product_id", "title", "median_days", "gaps", "buyers"]

# Whole days since 1970 of an order's time (UTC), per dialect.
_DAY = {
    "postgresql": "((o.placed_at AT TIME ZONE 'UTC')::date - DATE '1970-01-01')",
    "sqlite": "CAST(julianday(o.placed_at) - 2440587.5 AS INTEGER)",
}

# Every step groups (hashing) rather than sorts where it can: the product ids are text, and
# sorting millions of lines by them cost more than the rest together.
_INTERVALS = """
WITH purchases AS (
    SELECT DISTINCT o.profile_id AS pid, l.product_id AS product, {day} AS day
    FROM orders o JOIN order_lines l ON l.order_id = o.id
    WHERE o.shop_id = :shop AND l.shop_id = :shop AND o.profile_id IS NOT NULL
      AND o.cancelled_at IS NULL AND NOT o.test AND NOT (o.total > 0 AND o.refunded >= o.total)
      AND o.placed_at <= :as_of AND l.product_id IS NOT NULL
),
gaps AS (
    SELECT pid, product, day - LAG(day) OVER (PARTITION BY pid, product ORDER BY day) AS gap
    FROM purchases
),
buyers AS (
    SELECT product, pid, COUNT(gap) AS gaps FROM gaps GROUP BY product, pid
),
products AS (
    SELECT product, CAST(SUM(gaps) AS INTEGER) AS gaps,
           CAST(SUM(CASE WHEN gaps > 0 THEN 1 ELSE 0 END) AS INTEGER) AS buyers, COUNT(*) AS everyone
    FROM buyers GROUP BY product
),
patterns AS (
    SELECT product, gaps, buyers FROM products
    WHERE gaps >= :min_gaps AND buyers >= :min_buyers AND buyers >= :min_share * everyone
),
histogram AS (
    SELECT g.product, g.gap, COUNT(*) AS times
    FROM gaps g JOIN patterns p ON p.product = g.product
    WHERE g.gap IS NOT NULL GROUP BY g.product, g.gap
),
running AS (
    SELECT product, gap, CAST(SUM(times) OVER (PARTITION BY product ORDER BY gap) AS INTEGER) AS upto,
           CAST(SUM(times) OVER (PARTITION BY product) AS INTEGER) AS total
    FROM histogram
),
medians AS (
    -- Integer division (both dialects): the middle one, or the middle two of an even count.
    SELECT product, (MIN(CASE WHEN upto >= (total + 1) / 2 THEN gap END)
                     + MIN(CASE WHEN upto >= (total + 2) / 2 THEN gap END)) / 2.0 AS median_days
    FROM running GROUP BY product
),
newest AS (
    SELECT product_id AS product, MAX(id) AS line FROM order_lines
    WHERE shop_id = :shop AND product_id IS NOT NULL GROUP BY product_id
)
SELECT p.product, l.title, CAST(m.median_days AS FLOAT) AS median_days, p.gaps, p.buyers
FROM patterns p JOIN medians m ON m.product = p.product
JOIN newest n ON n.product = p.product JOIN order_lines l ON l.id = n.line
ORDER BY p.product
"""


def product_intervals(shop_id: int, as_of: dt.datetime) -> pd.DataFrame:
    """One row per product of the shop with a repurchase pattern in the orders placed by ``as_of``:
    ``product_id``, ``title`` (its most recently stored line's), ``median_days``, ``gaps`` and ``buyers`` (the
    customers whose gaps it was measured on)."""
    dialect = db.engine.dialect.name
    params = {
        "shop": shop_id,
        "as_of": as_of,
        "min_gaps": MIN_GAPS,
        "min_buyers": MIN_BUYERS,
        "min_share": MIN_REPEAT_SHARE,
    }
    statement = sa.text(_INTERVALS.format(day=_DAY[dialect])).bindparams(
        sa.bindparam("as_of", type_=db.metadata.tables["orders"].c.placed_at.type)
    )
    rows = db.session.execute(statement, params).all()
    return pd.DataFrame.from_records(rows, columns=INTERVAL_COLUMNS)
