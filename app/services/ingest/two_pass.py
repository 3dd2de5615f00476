"""Imports that resolve everyone at once, then write a batch per transaction (order history, profile exports).

Resolving an import item by item re-partitions and merges profiles thousands of times
for what is known at once. So the first pass reads every item, checks it and collects
its signal (the identifiers it names), and resolves them all with
``identity_backfill.resolve_history``: on a shop with no identity graph yet that is one
in-memory pass over the whole file (each distinct value normalised once, the people
written together, born merged: no merge to undo); on a shop that has a graph,
``resolve_many`` in the file's order.

The second pass reads the file again (it is not held in memory) and applies the items
on their resolved profiles a batch per transaction. A batch that fails is rolled back
and redone item by item through the item's own row-by-row path, each on its own
savepoint, so one item the database refuses spares the rest. An item that cannot be
read is reported with its number and skipped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from sqlalchemy.exc import DBAPIError

from app.errors import DomainError
from app.extensions import db
from app.models import Profile, Shop
from app.services import planner_stats, shop_lock
from app.services.identifiers import Ident, live_profiles
from app.services.identity_backfill import resolve_history
from app.services.resolution import Signal, event_ref

Item = TypeVar("Item")


@dataclass
class ImportResult:
    """How an import went: items applied, the items (by line number) that were skipped, and
    warnings about the file as a whole (a repeated column)."""

    applied: int = 0
    failed: list[tuple[int, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


@dataclass
class TwoPassImport(Generic[Item]):
    """One kind of import: how to read, check and apply its items.

    Attributes:
        read: opens the file again for each pass and yields ``(number, raw item)``.
        check: the item from its raw form, checked, or None for nothing (a blank
            line); raises ``ValueError`` or ``DomainError`` with the reason it is skipped.
        signal_of: the identifiers a checked item names, as a signal to resolve.
        load: the second pass's reading of an item the first found good (no need
            to check it again).
        apply_batch: applies ``(item, live profile or None)`` pairs in the open transaction.
        apply_one: the item's row-by-row path, for a batch the database refused.
        nobody: when set, an item whose signal names nobody usable (junk values only)
            is skipped with this reason instead of applied without a profile.
        batch: items per transaction in the second pass.
    """

    read: Callable[[], Iterable[tuple[int, object]]]
    check: Callable[[object], Item | None]
    signal_of: Callable[[Item], Signal]
    load: Callable[[object], Item]
    apply_batch: Callable[[list[tuple[Item, Profile | None]]], None]
    apply_one: Callable[[Item], None]
    nobody: str | None = None
    batch: int = 200

    def run(self, shop: Shop, progress: Callable[[int], None] | None = None) -> ImportResult:
        """Resolve every item's signal at once, then apply the items a batch per transaction.

        ``progress`` is told of each item as the second pass reaches it.
        """
        result = ImportResult()
        numbers, signals, compact = [], [], CompactSignals()
        for number, raw in self.read():
            try:
                item = self.check(raw)
                if item is None:
                    continue
                signals.append(compact(self.signal_of(item)))
            except (ValueError, DomainError) as exc:
                result.failed.append((number, reason(exc)))
                continue
            numbers.append(number)
        profile_of = dict(zip(numbers, resolve_history(shop, signals), strict=True))
        db.session.commit()
        del signals, numbers  # a signal per item: not held through the second pass
        if self.nobody is not None:
            for number in [n for n, pid in profile_of.items() if pid is None]:
                del profile_of[number]
                result.failed.append((number, self.nobody))
        batch: list[tuple[int, Item]] = []
        for number, raw in self.read():
            if number not in profile_of:
                _tell(progress, 1)  # nothing, or reported by the first pass
                continue
            batch.append((number, self.load(raw)))
            if len(batch) == self.batch:
                self._apply(shop, batch, profile_of, result)
                _tell(progress, len(batch))
                batch = []
        self._apply(shop, batch, profile_of, result)
        _tell(progress, len(batch))
        result.failed.sort()
        return result

    def _apply(
        self,
        shop: Shop,
        batch: list[tuple[int, Item]],
        profile_of: dict[int, int | None],
        result: ImportResult,
    ) -> None:
        """Apply a batch on its resolved profiles in one transaction; item by item if it fails."""
        if not batch:
            return
        try:
            # Under the shop's lock: a drain's merge can no longer move a profile we write to.
            shop_lock.hold([shop.id])
            profiles = live_profiles(shop.id, {profile_of[number] for number, _ in batch} - {None})
            self.apply_batch([(item, profiles.get(profile_of[number])) for number, item in batch])
            db.session.commit()
            result.applied += len(batch)
        except Exception:  # noqa: BLE001 - redone item by item, where each failure is told apart
            db.session.rollback()
            shop_lock.hold([shop.id])
            for number, item in batch:
                try:
                    with db.session.begin_nested():
                        self.apply_one(item)
                    result.applied += 1
                except Exception as exc:  # noqa: BLE001 - this item is skipped with its reason, not the file
                    result.failed.append((number, reason(exc)))
            db.session.commit()
        planner_stats.refresh_stale_now_and_then()  # the shop's tables grow from empty


class CompactSignals:
    """A signal as small as it can be held until the whole file is resolved (``resolve_history``).

    A file holds a signal per item until the end of its first pass. A customer's
    identifiers come back on each of their orders: equal identifiers (and tuples of
    them) are shared instead of held once per item, and the evidence is kept as the
    name ``event_ref`` gives it rather than as a dict. Resolution reads nothing else.
    """

    def __init__(self):
        self.idents: dict[Ident, Ident] = {}
        self.tuples: dict[tuple[Ident, ...], tuple[Ident, ...]] = {}

    def __call__(self, signal: Signal) -> Signal:
        shared = tuple(self.idents.setdefault(i, i) for i in signal.idents)
        shared = self.tuples.setdefault(shared, shared)
        return Signal(shared, signal.source, signal.seen_at, event_ref(signal.evidence))


def reason(exc: Exception) -> str:
    """What an import reports of a skipped item: the check's message, else the kind of error.

    A database error's text quotes the row's values (emails, names): it is not repeated.
    """
    if isinstance(exc, ValueError | DomainError):
        return getattr(exc, "message", None) or str(exc)[:200]
    if isinstance(exc, DBAPIError) and exc.orig is not None:
        return f"the database refused it ({type(exc.orig).__name__})"
    return f"it could not be applied ({type(exc).__name__})"


def _tell(progress: Callable[[int], None] | None, n: int) -> None:
    if progress is not None and n:
        progress(n)
