"""``c360 backfill``: import Shopify order history (one REST order object per JSON line).

An import in two passes (``two_pass``): the first reads each order's buyer (customer
id, email, phone) and resolves them all at once; the second applies the orders on
their resolved profiles a batch at a time with the webhooks' batch code
(``ingest.batch.apply_run``), one transaction per batch, and redoes a refused batch
order by order (``apply_order``). A line that is not an order is reported with its
number and skipped.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from functools import partial

from app.models import Profile, Shop
from app.services.ingest.batch import apply_run
from app.services.ingest.common import load_json
from app.services.ingest.orders import (
    apply_order,
    buyer_signal,
    check_order_values,
    check_shop_money,
    plan_order,
)
from app.services.ingest.two_pass import ImportResult, TwoPassImport

BATCH = 200  # orders per transaction


def backfill_orders(
    shop: Shop, read_lines: Callable[[], Iterable[str]], progress: Callable[[int], None] | None = None
) -> ImportResult:
    """Resolve every order's buyer at once, then apply the orders a batch per transaction.

    Args:
        read_lines: opens the history again for each pass (a file is read twice, not held).
        progress: told of each line as the second pass applies it.

    Re-running is safe: an order version is applied only when newer than the stored one.
    """
    return TwoPassImport(
        read=lambda: enumerate(read_lines(), start=1),
        check=partial(_checked_order, shop),
        signal_of=lambda payload: buyer_signal(shop, payload, None)[0],
        # The second pass parses only the lines the first found to be orders (``plan_order`` checks them).
        load=json.loads,
        apply_batch=partial(_apply_orders, shop),
        apply_one=lambda payload: apply_order(shop, payload, None),
        batch=BATCH,
    ).run(shop, progress)


def _checked_order(shop: Shop, text: str) -> dict | None:
    """The line's order, every value applying it reads checked (``check_order_values``) before
    its buyer is resolved: a line refused later for its date or total left an empty profile."""
    if not text.strip():
        return None
    payload = load_json(text, "the line")
    check_order_values(shop, payload)
    check_shop_money(shop, payload)
    return payload


def _apply_orders(shop: Shop, batch: list[tuple[dict, Profile | None]]) -> None:
    run = []
    for payload, profile in batch:
        planned = plan_order(shop, payload, None)
        planned.profile = profile
        run.append(planned)
    apply_run(shop, run, announce=False)  # history: staged quietly
