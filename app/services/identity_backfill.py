"""History backfill: resolve a newly installed shop's imported history in one pass, written in bulk.

When a shop installs the app, years of orders, customers and checkouts
arrive at once. ``resolve_many`` would take them one signal at a time,
re-partitioning a neighbourhood and writing rows for each; here the whole
history becomes one graph (``identity_history``), ``identity_graph.partition``
runs once over it, and profiles, identifiers, links and merge candidates are
written with a few multi-row INSERTs.

The result is what resolving the signals in time order through
``resolve_many`` leaves: the same partition of identifiers into profiles,
the same blocks and the same open candidates. One partition of the final
graph gives that wherever no identifier was ever shared by two people (no
candidate, no block, no identifier with more trusted neighbours than
``max_people_per_identifier``, none set apart by the per-kind cap): there,
people only ever grew by joining. Elsewhere history matters (a block decided
early stays, a candidate raised stays open), so those connected parts of the
graph are replayed signal by signal in memory (``identity_replay``) with the
same rules.

One difference is deliberate: profiles are born merged. Where ``resolve_many``
would create two profiles and merge them automatically, the backfill writes
one, so there are no automatic ``Merge`` rows, no merged-away profiles and no
candidates closed by those merges. A profile's first and last seen are those
of the signals that land on it.

The backfill applies only while the shop's identity graph is empty (an
install-time import). Otherwise the signals go through ``resolve_many`` in
batches, in time order, which is always correct. Two backfills of one shop at
once collide on the identifiers' unique key: the second transaction fails, and
its retry finds the graph filled and takes the incremental path.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from app import gc_tuning
from app.extensions import db
from app.models import Identifier, IdentifierLink, MergeCandidate, Profile, Shop
from app.models.base import utcnow
from app.services import identity_graph, shop_lock
from app.services.bulk_sql import copy_rows, insert_rows, insert_with_ids
from app.services.identifiers import TRUST, Ident, live_profile
from app.services.identity_graph import Key
from app.services.identity_history import History, Normaliser, read_history
from app.services.identity_links import MAX_COMPONENT
from app.services.identity_replay import OpenCandidate, Replay
from app.services.resolution import Signal, blocked_values, candidate_evidence, resolve_many
from app.services.shop_settings import effective_settings
from app.tenancy import scoped

BATCH = 1000


def resolve_history(shop: Shop, signals: Sequence[Signal], timings: dict | None = None) -> list[int | None]:
    """Resolve a shop's imported history; return the profile id each signal lands on.

    Args:
        signals: the history, in any order. Identifiers may be raw (as the source
            sent them): each distinct value is normalised once with the shop's country.
        timings: filled with each step's CPU seconds (``read``, ``settle``, ``write``)
            for benchmarks; none of it names anyone.

    Returns:
        For each signal, the id of the profile holding its most trusted usable
        identifier, or None when it names nobody usable (junk, nothing parseable).
    """
    shop_lock.hold([shop.id])  # no ingest batch of the shop resolves beside us (see shop_lock)
    settings = effective_settings(shop)["identity"]
    extra = blocked_values(settings, shop.country)
    if has_identity_graph(shop):
        return _incrementally(shop, signals, extra)
    clock = _Clock(timings)
    with gc_tuning.paused():
        history = clock("read", read_history, Normaliser(shop, extra), signals)
        outcome = clock("settle", settle, history, settings)
        return clock("write", write, shop, history, outcome)


class _Clock:
    """Run a step, adding its CPU time to ``timings`` when asked to."""

    def __init__(self, timings: dict | None):
        self.timings = timings

    def __call__(self, name: str, step, *args):
        started = time.process_time()
        out = step(*args)
        if self.timings is not None:
            self.timings[name] = self.timings.get(name, 0.0) + time.process_time() - started
        return out


def has_identity_graph(shop: Shop) -> bool:
    """True once the shop holds any identifier: a backfill would then ignore what is there."""
    return db.session.scalar(scoped(Identifier, shop.id, Identifier.id).limit(1)) is not None


def _incrementally(shop: Shop, signals: Sequence[Signal], extra: set[str]) -> list[int | None]:
    """The fallback: ``resolve_many`` in time-ordered batches, then each signal's live profile."""
    judge = Normaliser(shop, extra)
    order = sorted(range(len(signals)), key=lambda n: signals[n].seen_at)
    out: list[int | None] = [None] * len(signals)
    for start in range(0, len(order), BATCH):
        chunk = order[start : start + BATCH]
        batch = []
        for n in chunk:
            found = (judge(i.kind, i.value)[0] for i in signals[n].idents)
            idents = tuple(Ident(*key) for key in found if key is not None)
            batch.append(Signal(idents, signals[n].source, signals[n].seen_at, signals[n].evidence))
        for n, profile in zip(chunk, resolve_many(shop, batch), strict=True):
            out[n] = None if profile is None else profile.id
    # A later batch may have merged an earlier batch's profile away.
    return [None if pid is None else live_profile(db.session.get(Profile, pid)).id for pid in out]


@dataclass
class Outcome:
    """Who owns each identifier (a profile label), the lasting blocks, and the open candidates."""

    owner: dict[Key, tuple] = field(default_factory=dict)
    blocked: set[Key] = field(default_factory=set)
    candidates: list[tuple[tuple, tuple, OpenCandidate]] = field(default_factory=list)


def settle(history: History, settings: dict) -> Outcome:
    """Partition the whole graph once; replay the parts where history matters (see the module)."""
    max_people = settings["max_people_per_identifier"]
    nodes = {k: t for k, t in history.first.items() if k[0] != "raw_phone"}
    part = identity_graph.partition(
        nodes,
        history.links.values(),
        max_per_kind=settings["max_identifiers_per_kind"],
        max_people=max_people,
    )
    component = _components(nodes, history.links)
    replayed = _shared_components(part, history.links, component, max_people)
    outcome = Outcome()
    root_of, owner = part.root_of, outcome.owner
    for key, comp in component.items():
        if comp not in replayed:
            owner[key] = ("person", root_of[key])
    link_order = {pair: n for n, pair in enumerate(history.links)} if replayed else {}
    replay = Replay(history.first, history.links, link_order, settings)
    raw_home = history.raw_home
    for n in history.order:
        keys = history.keys[n]
        if not keys:
            continue
        raw = tuple(k for k in history.raw[n] if raw_home[k] == n)
        if component[keys[0]] in replayed:
            replay.resolve(keys, raw, history.at[n])
        else:
            for key in raw:
                owner[key] = owner[keys[0]]
    owner.update((key, ("profile", p)) for key, p in replay.owner.items())
    outcome.blocked = replay.blocked
    outcome.candidates = [(("profile", a), ("profile", b), c) for a, b, c in replay.open_candidates()]
    return outcome


def _components(nodes: dict[Key, object], links) -> dict[Key, Key]:
    """The connected part of the graph each identifier is in (named by one of its identifiers)."""
    parent: dict[Key, Key] = {}

    def find(x: Key) -> Key:
        root = x
        while (up := parent.get(root, root)) != root:
            root = up
        while x != root:
            parent[x], x = root, parent.get(x, x)
        return root

    for a, b in links:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[ra] = rb
    return {k: find(k) for k in nodes}


def _shared_components(part, links, component: dict[Key, Key], max_people: int) -> set[Key]:
    """The parts of the graph where history matters: someone was shared, blocked or set apart."""
    above: dict[Key, int] = {}
    for a, b in links:
        ta, tb = TRUST[a[0]], TRUST[b[0]]
        if ta != tb:
            low = a if ta > tb else b
            above[low] = above.get(low, 0) + 1
    shared = {component[c.roots[0]] for c in part.candidates}
    shared.update(component[k] for k in part.blocked)
    shared.update(component[k] for k, n in above.items() if n > max_people or part.root_of[k] == k)
    sizes: dict[Key, int] = {}
    for comp in component.values():
        sizes[comp] = sizes.get(comp, 0) + 1
    # The incremental walk is cut at MAX_COMPONENT identifiers: only a replay cuts it the same way.
    shared.update(comp for comp, size in sizes.items() if size >= MAX_COMPONENT // 2)
    return shared


def write(shop: Shop, history: History, outcome: Outcome) -> list[int | None]:
    """Insert the profiles, identifiers, links and candidates; return each signal's profile id."""
    owner = outcome.owner
    label_of_signal = [owner[keys[0]] if keys else None for keys in history.keys]
    profile_rows = _profile_spans(history, owner, label_of_signal)
    # Rows are generated as they are written (one per profile, identifier and link: held whole,
    # they were the largest thing a backfill kept in memory).
    rows = ({"shop_id": shop.id, "first_seen_at": a, "last_seen_at": b} for a, b in profile_rows.values())
    ids = insert_with_ids(Profile.__table__, rows, len(profile_rows))
    profile_id = dict(zip(profile_rows, ids, strict=True))
    ident_id = _write_identifiers(shop, history, outcome, profile_id)
    _write_links(shop, history, ident_id)
    now = utcnow()
    insert_rows(
        MergeCandidate.__table__,
        [
            {
                "shop_id": shop.id,
                "profile_a_id": min(profile_id[a], profile_id[b]),
                "profile_b_id": max(profile_id[a], profile_id[b]),
                "reason": cand.reason,
                "evidence": candidate_evidence(cand.candidate),
                "status": "open",
                "created_at": now,
            }
            for a, b, cand in outcome.candidates
        ],
    )
    db.session.flush()
    return [None if label is None else profile_id[label] for label in label_of_signal]


def _profile_spans(history: History, owner: dict, label_of_signal: list) -> dict[tuple, list]:
    """Each profile's first and last seen, in the order its first identifier appeared.

    A profile's times are those of the signals landing on it (walked in time order, so
    the first is the earliest), else (a cookie set apart by the per-kind cap, which no
    signal names first) those of its identifiers.
    """
    landed: dict[tuple, list] = {}
    for n in history.order:
        label = label_of_signal[n]
        if label is not None:
            span = landed.get(label)
            if span is None:
                landed[label] = [history.at[n], history.at[n]]
            else:
                span[1] = history.at[n]
    spans: dict[tuple, list] = {}
    for key, first in history.first.items():
        label = owner[key]
        if label not in spans:
            spans[label] = landed.get(label) or [first, history.last[key]]
        elif label not in landed:
            span = spans[label]
            span[0], span[1] = min(span[0], first), max(span[1], history.last[key])
    return spans


def _write_identifiers(shop: Shop, history: History, outcome: Outcome, profile_id: dict) -> dict[Key, int]:
    owner, blocked = outcome.owner, outcome.blocked
    rows = (
        {
            "shop_id": shop.id,
            "profile_id": profile_id[owner[key]],
            "kind": key[0],
            "value": key[1],
            "source": history.source[key],
            "blocked_reason": "shared_by_many" if key in blocked else None,
            "first_seen_at": first,
            "last_seen_at": history.last[key],
        }
        for key, first in history.first.items()
    )
    ids = insert_with_ids(Identifier.__table__, rows, len(history.first))
    return dict(zip(history.first, ids, strict=True))


def _write_links(shop: Shop, history: History, ident_id: dict[Key, int]) -> None:
    copy_rows(IdentifierLink.__table__, _link_rows(shop, history, ident_id))


def _link_rows(shop: Shop, history: History, ident_id: dict[Key, int]) -> Iterator[dict]:
    for pair, sighting in history.links.items():
        a, b = sorted((ident_id[pair[0]], ident_id[pair[1]]))
        yield {
            "shop_id": shop.id,
            "a_id": a,
            "b_id": b,
            "relation": "seen",
            "source": sighting.source,
            "event_ref": sighting.event_ref,
            "first_seen_at": sighting.at,
            "last_seen_at": history.link_last[pair],
        }
