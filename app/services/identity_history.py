"""A shop's imported history as the identity graph it makes: identifiers, links, and who named whom.

The history backfill (``identity_backfill``) reads years of orders, customers
and checkouts at once. Normalising each signal's values one call at a time
would parse the same phone number every time it was seen, so each distinct
raw value is normalised and judged (junk or not, by ``resolution.may_link``,
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
from app.services.resolution import Signal, event_ref, may_link


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
        lot = may_link(self.shop, ident, self.extra)
        return (None, False) if lot is None else ((ident.kind, ident.value), lot)


def read_history(judge: Normaliser, signals: Sequence[Signal]) -> History:
    """Normalise the signals and note, in time order, the identifiers and links they create.

    ``judge`` is the shop's ``Normaliser``: a new one, or one that already holds the
    values (the identity benchmark times the linking apart from normalising).
    """
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
    keys_of = history.keys
    rank: dict[Key, int] = {}
    shared: dict[tuple[Key, ...], tuple[Key, ...]] = {}
    cache = judge.cache  # read inline: a call per identifier adds up
    for n in order:
        signal = signals[n]
        idents = signal.idents
        if len(idents) == 1:  # most signals: a page view's cookie, a reply's phone
            ident = idents[0]
            key, ok = cache.get((ident.kind, ident.value)) or judge(ident.kind, ident.value)
            if not ok:
                continue  # junk, or a raw phone alone: names nobody, keeps nothing
            keys, raw = shared.get((key,)) or shared.setdefault((key,), (key,)), ()
        else:
            keys, raw = _sort_keys(idents, judge)
            if not keys:
                continue  # names nobody: ``resolve`` returns None and keeps nothing, not even raw phones
            keys = shared.setdefault(keys, keys)  # a customer's come back
        keys_of[n] = keys
        seen_at, src = signal.seen_at, signal.source[:40]
        for key in keys:
            if key not in first:
                rank[key] = len(rank)
                first[key], last[key], source[key] = seen_at, seen_at, src
            elif seen_at > last[key]:
                last[key] = seen_at
        if len(keys) > 1:
            _link(keys, rank, links, link_last, seen_at, src, signal.evidence)
        if raw:
            history.raw[n] = raw
            for key in raw:
                if key not in first:
                    rank[key] = len(rank)
                    first[key], last[key], source[key] = seen_at, seen_at, src
                    history.raw_home[key] = n
    return history


def _sort_keys(idents, judge: Normaliser) -> tuple[tuple[Key, ...], tuple[Key, ...]]:
    """A signal's usable keys, most trusted first, and its raw phones in order (as ``split_usable``)."""
    usable: set[Key] = set()
    raw: set[Key] = set()
    cache = judge.cache
    for ident in idents:
        key, ok = cache.get((ident.kind, ident.value)) or judge(ident.kind, ident.value)
        if key is not None:
            (usable if ok else raw).add(key)
    if len(usable) == 2:
        a, b = usable
        keys = (a, b) if (TRUST[a[0]], a[1]) < (TRUST[b[0]], b[1]) else (b, a)
    else:
        keys = tuple(sorted(usable, key=lambda k: (TRUST[k[0]], k[1])))
    return keys, tuple(sorted(raw)) if raw else ()


def _link(keys, rank, links, link_last, at, src, evidence) -> None:
    """Link every pair of one signal's identifiers, new pairs in the order ``record_sightings`` makes them.

    The signal is named (``event_ref``) only for a new link: most links are seen again.
    """
    if len(keys) == 2:  # the usual case: one pair
        a, b = keys
        pair = (a, b) if rank[a] < rank[b] else (b, a)
        if pair not in links:
            links[pair] = Sighting(pair[0], pair[1], at, src, _ref(evidence))
            link_last[pair] = at
        elif at > link_last[pair]:
            link_last[pair] = at
        return
    fresh = []
    for i, a in enumerate(keys):
        for b in keys[i + 1 :]:
            pair = (a, b) if rank[a] < rank[b] else (b, a)
            if pair in links:
                if at > link_last[pair]:
                    link_last[pair] = at
            else:
                fresh.append(pair)
    if not fresh:
        return
    if len(fresh) > 1:
        fresh.sort(key=lambda p: (rank[p[0]], rank[p[1]]))
    ref = _ref(evidence)
    for pair in fresh:
        links[pair] = Sighting(pair[0], pair[1], at, src, ref)
        link_last[pair] = at


def _ref(evidence) -> str | None:
    """The signal's name as a link keeps it: ``event_ref``, at most 255 characters, None for none."""
    return (event_ref(evidence) or "")[:255] or None
