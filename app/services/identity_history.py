"""A shop's imported history as the identity graph it makes: identifiers, links, and who named whom.

The history backfill (``identity_backfill``) reads years of orders, customers
and checkouts at once. Normalising each signal's values one call at a time
would parse the same phone number every time it was seen, so each distinct
raw value is normalised and judged (junk or not, by ``resolution.split_usable``,
the rule ``resolve`` uses) once. The signals are then walked in time order,
as ``resolve_many`` would see them, to note what it would create and in which
order: identifiers (first and last seen, source), the ``seen`` links between
the identifiers of one signal (first sighting's time, source and event), and
the signal that creates each raw phone.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field

from app.models import Shop
from app.services.identifiers import KINDS, TRUST, Ident, normalise
from app.services.identity_graph import Key, Sighting
from app.services.resolution import Signal, event_ref, split_usable


@dataclass
class History:
    """What resolving the signals in time order would create, in the order it would create it.

    ``first`` holds every identifier (raw phones too) in creation order, which stands
    for the order of their database ids; ``links`` holds the ``seen`` links in creation
    order, each with ``a`` created before ``b``.
    """

    order: list[int]  # signal indexes, in time order (ties keep the input order)
    keys: list[tuple[Key, ...]]  # per signal: usable identifiers, most trusted first
    raw: list[tuple[Key, ...]]  # per signal: raw phones
    at: list[dt.datetime]  # per signal: when it happened
    first: dict[Key, dt.datetime] = field(default_factory=dict)
    last: dict[Key, dt.datetime] = field(default_factory=dict)
    source: dict[Key, str] = field(default_factory=dict)
    links: dict[tuple[Key, Key], Sighting] = field(default_factory=dict)
    link_last: dict[tuple[Key, Key], dt.datetime] = field(default_factory=dict)
    # The signal whose resolution creates each raw phone (the first with a usable identifier).
    raw_home: dict[Key, int] = field(default_factory=dict)


class Normaliser:
    """Normalise and judge each distinct raw identifier once for one shop."""

    def __init__(self, shop: Shop, extra: set[str]):
        self.shop, self.extra, self.country = shop, extra, shop.country
        self.cache: dict[tuple[str, str], tuple[Key | None, bool]] = {}

    def __call__(self, kind: str, value: str) -> tuple[Key | None, bool]:
        """``(key, usable)``: the normalised key (None for junk or nothing), and whether it may link."""
        found = self.cache.get((kind, value))
        if found is None:
            found = self.cache[(kind, value)] = self._judge(kind, value)
        return found

    def _judge(self, kind: str, value: str) -> tuple[Key | None, bool]:
        if kind == "raw_phone":
            ident: Ident | None = Ident(kind, value)
        else:
            ident = normalise(kind, value, self.country) if kind in KINDS else None
        if ident is None:
            return None, False
        usable, raw = split_usable(self.shop, [ident], self.extra)
        if usable:
            return (ident.kind, ident.value), True
        return ((ident.kind, ident.value), False) if raw else (None, False)


def read_history(shop: Shop, signals: Sequence[Signal], extra: set[str]) -> History:
    """Normalise the signals and note, in time order, the identifiers and links they create."""
    judge = Normaliser(shop, extra)
    at = [s.seen_at for s in signals]
    order = sorted(range(len(signals)), key=at.__getitem__)
    history = History(order, [()] * len(signals), [()] * len(signals), at)
    first, last, source, links, link_last = (
        history.first,
        history.last,
        history.source,
        history.links,
        history.link_last,
    )
    rank: dict[Key, int] = {}
    shared: dict[tuple[Key, ...], tuple[Key, ...]] = {}
    trust, cache = TRUST, judge.cache  # the cache read inline: a call per identifier adds up
    for n in order:
        signal = signals[n]
        usable: set[Key] = set()
        raw: set[Key] = set()
        for ident in signal.idents:
            found = cache.get((ident.kind, ident.value))
            key, ok = judge(ident.kind, ident.value) if found is None else found
            if key is not None:
                (usable if ok else raw).add(key)
        if not usable:
            continue  # names nobody: ``resolve`` returns None and keeps nothing, not even raw phones
        keys = sorted(usable, key=lambda k: (trust[k[0]], k[1])) if len(usable) > 1 else [*usable]
        keys = history.keys[n] = shared.setdefault(tuple(keys), tuple(keys))  # a customer's come back
        at, src = signal.seen_at, signal.source[:40]
        for key in keys:
            if key not in first:
                rank[key] = len(rank)
                first[key], last[key], source[key] = at, at, src
            elif at > last[key]:
                last[key] = at
        if len(keys) > 1:
            _link(keys, rank, links, link_last, at, src, event_ref(signal.evidence))
        if raw:
            history.raw[n] = tuple(sorted(raw))
            for key in history.raw[n]:
                if key not in first:
                    rank[key] = len(rank)
                    first[key], last[key], source[key] = at, at, src
                    history.raw_home[key] = n
    return history


def _link(keys, rank, links, link_last, at, src, ref) -> None:
    """Link every pair of one signal's identifiers, new pairs in the order ``record_sightings`` makes them."""
    ref = (ref or "")[:255] or None
    fresh = []
    for i, a in enumerate(keys):
        for b in keys[i + 1 :]:
            pair = (a, b) if rank[a] < rank[b] else (b, a)
            if pair in links:
                if at > link_last[pair]:
                    link_last[pair] = at
            else:
                fresh.append(pair)
    if len(fresh) > 1:
        fresh.sort(key=lambda p: (rank[p[0]], rank[p[1]]))
    for pair in fresh:
        links[pair] = Sighting(pair[0], pair[1], at, src, ref)
        link_last[pair] = at
