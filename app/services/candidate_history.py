"""Open merge candidates brought in line with time order when a signal arrives late.

A candidate raised while two people looked alike stays open (docs/identity.md),
so the open candidates depend on history, not only on the final graph: who the
household phone was seen with first, which sightings came before a block. The
incremental path raises them as signals arrive; a signal older than links
already held (a late webhook), or the second of one instant, would leave the
pairs of arrival order (the phone's candidates naming whoever was delivered
first). So such a signal's connected part of the graph is replayed in memory
in time order (``identity_replay.Replay``, the incremental path's own rules)
from the links it holds, and the stored open candidates are made to match:
a pair time order would not have raised closes as ``superseded`` (a reviewer
never decided it: it is kept, not deleted), a pair it would have raised is
raised, and decided candidates stay as decided.

Signals of one instant are taken in the order of their identifiers (most
trusted first), so which was delivered first never matters either. Only a
signal that arrived late or tied in a part of the graph where a doubt can
arise pays for the replay; signals in time order never do.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable

import sqlalchemy as sa

from app.extensions import db
from app.models import Identifier, IdentifierLink, MergeCandidate, Profile, Shop
from app.models.base import utcnow
from app.services import identity_graph
from app.services.bulk_sql import id_in
from app.services.identifiers import TRUST, live_profiles
from app.services.identity_graph import EXCLUSIVE_KINDS, Key, Sighting
from app.services.identity_links import MAX_COMPONENT
from app.services.identity_replay import Replay
from app.tenancy import scoped

SUPERSEDED = "superseded"


def arrived_out_of_order(
    seen_at: dt.datetime, sightings: list[Sighting], own: set[Key], late_blocked: bool
) -> bool:
    """Whether another signal's link of the neighbourhood is as late as this one, or later.

    ``late_blocked``: one of the signal's own identifiers is blocked and was named later
    (the walk stops there, so the later links beyond it are not in ``sightings``).
    """
    return late_blocked or any(s.at >= seen_at and not (s.a in own and s.b in own) for s in sightings)


def may_doubt(sightings: Iterable[Sighting], blocked: bool) -> bool:
    """Whether any candidate can be raised here: an identifier seen with two more trusted ones,
    two equally trusted ones seen together, or a marketplace id (a person holds one); or a block."""
    if blocked:
        return True
    above: dict[Key, set[Key]] = defaultdict(set)
    for s in sightings:
        if s.a == s.b:
            continue
        ta, tb = TRUST[s.a[0]], TRUST[s.b[0]]
        if ta == tb or s.a[0] in EXCLUSIVE_KINDS or s.b[0] in EXCLUSIVE_KINDS:
            return True
        low, high = (s.a, s.b) if ta > tb else (s.b, s.a)
        above[low].add(high)
        if len(above[low]) > 1:
            return True
    return False


def align_open_candidates(
    shop: Shop, settings: dict, start_ids: list[int], now: dt.datetime | None = None
) -> int | None:
    """Make the open candidates of the part of the graph around ``start_ids`` those time order leaves.

    Returns:
        The number of candidates closed, raised, reopened or given another reason; None when
        the part is larger than a neighbourhood may be (``MAX_COMPONENT``) and was left alone.
    """
    part = _component(shop.id, start_ids)
    if part is None:
        return None
    rows, links = part
    replay = _replay(rows, links, settings)
    wanted = _wanted(replay, rows)
    return _apply(shop, {r.profile_id for r in rows.values()}, wanted, now or utcnow())


def _component(shop_id: int, start_ids: list[int]):
    """Every identifier linked to ``start_ids`` (through blocked ones too: time order saw past them)
    or sharing a profile with one, and the links among them; None past ``MAX_COMPONENT``."""
    db.session.flush()
    rows: dict[int, Identifier] = {}
    frontier = set(start_ids)
    while frontier:
        found = _by_id(shop_id, frontier)
        rows.update((r.id, r) for r in found)
        if len(rows) > MAX_COMPONENT:
            return None
        ids = sorted(frontier)
        nxt = set()
        for a, b in db.session.execute(
            scoped(IdentifierLink, shop_id, IdentifierLink.a_id, IdentifierLink.b_id).where(
                sa.or_(id_in(IdentifierLink.a_id, ids), id_in(IdentifierLink.b_id, ids))
            )
        ):
            nxt.update((a, b))
        pids = sorted({r.profile_id for r in found})
        nxt.update(
            db.session.scalars(
                scoped(Identifier, shop_id, Identifier.id).where(id_in(Identifier.profile_id, pids))
            )
        )
        frontier = nxt - rows.keys()
    ids = sorted(rows)
    links = list(
        db.session.scalars(
            scoped(IdentifierLink, shop_id)
            .where(id_in(IdentifierLink.a_id, ids), id_in(IdentifierLink.b_id, ids))
            .order_by(IdentifierLink.id)
        )
    )
    return {(r.kind, r.value): r for r in rows.values() if r.kind != "raw_phone"}, links


def _by_id(shop_id: int, ids: set[int]) -> list[Identifier]:
    # ORM rows: a batch's pending first and last seen show on the objects it holds.
    return list(db.session.scalars(scoped(Identifier, shop_id).where(id_in(Identifier.id, sorted(ids)))))


def _replay(rows: dict[Key, Identifier], links: list[IdentifierLink], settings: dict) -> Replay:
    """Resolve the part's signals again in time order, as they can be told from its links."""
    key_of = {r.id: k for k, r in rows.items()}
    sightings: dict[tuple[Key, Key], Sighting] = {}
    decisions: dict[str, list[tuple[Key, Key]]] = {"same": [], "not_same": []}
    for link in links:
        if link.a_id not in key_of or link.b_id not in key_of:
            continue
        a, b = key_of[link.a_id], key_of[link.b_id]
        if link.relation == "seen":
            sightings[(a, b)] = Sighting(a, b, link.first_seen_at, link.source or "", link.event_ref)
        else:
            decisions[link.relation].append((a, b))
    signals = _signals({k: r.first_seen_at for k, r in rows.items()}, sightings.values())
    order: dict[tuple[Key, Key], int] = {}
    for keys, _at in signals:
        for i, a in enumerate(keys):
            for b in keys[i + 1 :]:
                pair = (a, b) if (a, b) in sightings else (b, a)
                if pair in sightings:
                    order.setdefault(pair, len(order))
    first = {k: r.first_seen_at for k, r in rows.items()}
    replay = Replay(first, sightings, order, settings, **decisions)
    for keys, at in signals:
        replay.resolve(keys, (), at)
    return replay


def _signals(
    first: dict[Key, dt.datetime], sightings: Iterable[Sighting]
) -> list[tuple[tuple[Key, ...], dt.datetime]]:
    """The signals the links were first seen by (one per time, source and event), in time order.

    Each instant's in the order of their identifiers; an identifier first seen alone is a signal.
    """
    groups: dict[tuple, set[Key]] = defaultdict(set)
    for s in sightings:
        groups[(s.at, s.source, s.event_ref or "")].update((s.a, s.b))
    signals = [(_ranked(keys), at) for (at, _source, _ref), keys in groups.items()]
    named = {(k, at) for keys, at in signals for k in keys}
    signals += [((k,), at) for k, at in first.items() if (k, at) not in named]
    return sorted(signals, key=lambda s: (s[1], s[0]))


def _ranked(keys: Iterable[Key]) -> tuple[Key, ...]:
    return tuple(sorted(keys, key=lambda k: (TRUST[k[0]], k[1])))


def _wanted(replay: Replay, rows: dict[Key, Identifier]) -> dict[tuple[int, int], identity_graph.Candidate]:
    """Time order's open candidates as pairs of the stored profiles holding each side's people."""
    wanted: dict[tuple[int, int], identity_graph.Candidate] = {}
    for a, b, open_cand in replay.open_candidates():
        sides = {rows[min(replay.held[p], key=lambda k: (TRUST[k[0]], k[1]))].profile_id for p in (a, b)}
        if len(sides) == 2:
            wanted.setdefault(tuple(sorted(sides)), open_cand.candidate)
    return wanted


def _apply(shop: Shop, profiles: set[int], wanted: dict, now: dt.datetime) -> int:
    """Close the open candidates of ``profiles`` that are not ``wanted``, raise (or reopen) the missing."""
    from app.services.resolution import candidate_evidence, new_candidate

    changed = 0
    family = _family(shop.id, profiles)
    cands = list(
        db.session.scalars(
            scoped(MergeCandidate, shop.id)
            .where(
                MergeCandidate.status == "open",
                sa.or_(
                    id_in(MergeCandidate.profile_a_id, family), id_in(MergeCandidate.profile_b_id, family)
                ),
            )
            .order_by(MergeCandidate.id)
        )
    )
    live = live_profiles(shop.id, {p for c in cands for p in (c.profile_a_id, c.profile_b_id)})
    covered = set()
    for cand in cands:
        a, b = sorted(live[p].id if p in live else p for p in (cand.profile_a_id, cand.profile_b_id))
        if a == b:
            continue  # hidden already; the merge that made them one closes it
        cand_wanted = wanted.get((a, b))
        if cand_wanted is None:
            cand.status, cand.decided_at, cand.decided_by = SUPERSEDED, now, "resolution"
            changed += 1
        else:
            covered.add((a, b))
            # Its profiles may hold other people now (a re-partition moved them): say why time order doubts.
            evidence = candidate_evidence(cand_wanted)
            if (cand.reason, cand.evidence) != (cand_wanted.reason, evidence):
                cand.reason, cand.evidence = cand_wanted.reason, evidence
                changed += 1
    missing = {pair: c for pair, c in wanted.items() if pair not in covered}
    stored = (
        {
            (c.profile_a_id, c.profile_b_id): c
            for c in db.session.scalars(
                scoped(MergeCandidate, shop.id).where(
                    id_in(MergeCandidate.profile_a_id, sorted({a for a, _ in missing})),
                    id_in(MergeCandidate.profile_b_id, sorted({b for _, b in missing})),
                )
            )
        }
        if missing
        else {}
    )
    for (a, b), cand in missing.items():
        row = stored.get((a, b))
        if row is None:
            db.session.add(new_candidate(shop, a, b, cand))
        elif row.status == SUPERSEDED:
            reopen(row, cand.reason, candidate_evidence(cand))
        else:
            continue  # decided by a person: it stays as decided
        changed += 1
    db.session.flush()
    return changed


def reopen(cand: MergeCandidate, reason: str, evidence: dict) -> None:
    """A superseded candidate raised again: open, with the doubt that raised it now."""
    cand.status, cand.decided_at, cand.decided_by = "open", None, None
    cand.reason, cand.evidence = reason, evidence


def _family(shop_id: int, profiles: set[int]) -> list[int]:
    """``profiles`` and every profile merged into one of them, at any depth (candidates may name those)."""
    out, frontier = set(profiles), set(profiles)
    while frontier:
        frontier = (
            set(
                db.session.scalars(
                    scoped(Profile, shop_id, Profile.id).where(
                        id_in(Profile.merged_into_id, sorted(frontier))
                    )
                )
            )
            - out
        )
        out |= frontier
    return sorted(out)
