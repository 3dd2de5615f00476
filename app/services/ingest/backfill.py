"""``c360 backfill``: import Shopify order history (one REST order object per JSON line).

Two passes over the file. The first reads each order's buyer (customer id, email,
phone) and resolves them all at once with ``identity_backfill.resolve_history``:
on a shop with no identity graph yet that is one in-memory pass over the whole
history (each distinct value normalised once, the people written together, born
merged: no merge to undo); on a shop that has a graph, ``resolve_many`` in time
order. Resolving order by order, as the import did before, re-partitioned and
merged profiles thousands of times for what is known at once.

The second pass applies the orders on their resolved profiles a batch at a time
with the webhooks' batch code (``ingest.batch.apply_run``), one transaction per
batch. A batch that fails is rolled back and redone line by line, each line on its
own savepoint, so one order the database refuses spares the rest. A line that is
not an order is reported with its number and skipped.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from app.errors import DomainError
from app.extensions import db
from app.models import Shop
from app.services import planner_stats
from app.services.identifiers import live_profiles
from app.services.identity_backfill import resolve_history
from app.services.ingest.batch import apply_run
from app.services.ingest.orders import apply_order, buyer_signal, check_order, plan_order

BATCH = 200


@dataclass
class BackfillResult:
    """How the import went: orders applied and the lines that could not be read."""

    applied: int = 0
    failed: list[tuple[int, str]] = field(default_factory=list)


def backfill_orders(
    shop: Shop, read_lines: Callable[[], Iterable[str]], progress: Callable[[int], None] | None = None
) -> BackfillResult:
    """Resolve every order's buyer at once, then apply the orders a batch per transaction.

    Args:
        read_lines: opens the history again for each pass (a file is read twice, not held).
        progress: told of each line as the second pass applies it.

    Re-running is safe: an order version is applied only when newer than the stored one.
    """
    result = BackfillResult()
    numbers, signals = [], []
    for number, text in enumerate(read_lines(), start=1):
        if not text.strip():
            continue
        try:
            payload = json.loads(text)
            check_order(payload)
            signals.append(buyer_signal(shop, payload, None)[0])
        except (ValueError, DomainError) as exc:
            result.failed.append((number, _reason(exc)))
            continue
        numbers.append(number)
    profile_of = dict(zip(numbers, resolve_history(shop, signals), strict=True))
    db.session.commit()
    # The second pass parses only the lines the first found to be orders (``plan_order`` checks them).
    batch: list[tuple[int, dict]] = []
    for number, text in enumerate(read_lines(), start=1):
        if number not in profile_of:
            _tell(progress, 1)  # blank, or reported by the first pass
            continue
        batch.append((number, json.loads(text)))
        if len(batch) == BATCH:
            _apply(shop, batch, profile_of, result)
            _tell(progress, len(batch))
            batch = []
    _apply(shop, batch, profile_of, result)
    _tell(progress, len(batch))
    result.failed.sort()
    return result


def _apply(
    shop: Shop, batch: list[tuple[int, dict]], profile_of: dict[int, int | None], result: BackfillResult
) -> None:
    """Apply a batch of ``(line number, order)`` on their resolved profiles in one transaction; line by
    line if it fails."""
    if not batch:
        return
    try:
        profiles = live_profiles(shop.id, {profile_of[number] for number, _ in batch} - {None})
        run = []
        for number, payload in batch:
            planned = plan_order(shop, payload, None)
            planned.profile = profiles.get(profile_of[number])
            run.append(planned)
        apply_run(shop, run)
        db.session.commit()
        result.applied += len(batch)
    except Exception:  # noqa: BLE001 - redone line by line, where each failure is told apart
        db.session.rollback()
        for number, payload in batch:
            try:
                with db.session.begin_nested():
                    apply_order(shop, payload, None)
                result.applied += 1
            except (ValueError, DomainError) as exc:
                result.failed.append((number, _reason(exc)))
        db.session.commit()
    planner_stats.refresh_stale_now_and_then()  # the shop's tables grow from empty


def _reason(exc: Exception) -> str:
    return getattr(exc, "message", None) or str(exc)[:200]


def _tell(progress: Callable[[int], None] | None, n: int) -> None:
    if progress is not None and n:
        progress(n)
