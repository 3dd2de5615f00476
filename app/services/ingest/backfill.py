"""``c360 backfill``: import Shopify order history (one REST order object per JSON line)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from app.errors import DomainError
from app.extensions import db
from app.models import Shop
from app.services import planner_stats
from app.services.ingest.orders import apply_order

BATCH = 200


@dataclass
class BackfillResult:
    """How the import went: orders applied and the lines that could not be read."""

    applied: int = 0
    failed: list[tuple[int, str]] = field(default_factory=list)


def backfill_orders(
    shop: Shop, lines: Iterable[str], progress: Callable[[int], None] | None = None
) -> BackfillResult:
    """Apply each order line through the same code as ``orders/create``; commit every ``BATCH``.

    Re-running is safe: an order version is applied only when newer than the stored one.
    """
    result = BackfillResult()
    for number, line in enumerate(lines, start=1):
        if line.strip():
            try:
                with db.session.begin_nested():
                    apply_order(shop, json.loads(line), None)
                result.applied += 1
            except (ValueError, DomainError) as exc:
                result.failed.append((number, getattr(exc, "message", None) or str(exc)[:200]))
        if number % BATCH == 0:
            db.session.commit()
            planner_stats.refresh_stale_now_and_then()  # the shop's tables grow from empty
        if progress is not None:
            progress(1)
    db.session.commit()
    return result
