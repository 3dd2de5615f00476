"""``resolve_many`` replayed in memory over the parts of a history where the order of events matters.

Where a shared phone, a family laptop or a library computer ties people
together, what resolution leaves depends on history, not only on the final
graph: a block decided on the links seen so far stays (``shared_by_many``),
and a candidate raised while two people looked alike stays open even if a
later link would not raise it. The history backfill replays such parts
signal by signal, as ``resolve_many`` does: the same trigger (a signal that
repeats what one profile holds changes nothing), the same neighbourhood walk
(links of unblocked identifiers and the identifiers of the same profile, cut
at ``identity_links.MAX_COMPONENT``), the same ``identity_graph.partition``,
the same choice of home profiles and merges (``resolution.plan_homes``) and
the same candidate pairs. Profiles are numbers here; nothing touches the
database.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from app.services import identity_graph
from app.services.identity_graph import Key, Sighting
from app.services.identity_links import MAX_COMPONENT
from app.services.resolution import candidate_pairs, candidate_sides, plan_homes


@dataclass
class OpenCandidate:
    """A candidate still open at the end: the reason and the evidence it was raised with."""

    reason: str
    candidate: identity_graph.Candidate


class Replay:
    """The identity state of one shop as ``resolve_many`` would leave it, held in dicts.

    ``owner`` maps every identifier (raw phones too) to its profile number;
    profile numbers grow in creation order, which is how ``plan_homes`` ranks
    equally trusted profiles (older first).
    """

    def __init__(
        self,
        first: dict[Key, dt.datetime],
        links: dict[tuple[Key, Key], Sighting],
        link_order: dict[tuple[Key, Key], int],
        settings: dict,
        *,
        same: list[tuple[Key, Key]] | None = None,
        not_same: list[tuple[Key, Key]] | None = None,
    ):
        self.all_first, self.all_links, self.link_order = first, links, link_order
        # People's decisions (none in a backfill): the incremental path partitions with them.
        self.same, self.not_same = same or [], not_same or []
        self.max_per_kind = settings["max_identifiers_per_kind"]
        self.max_people = settings["max_people_per_identifier"]
        self.owner: dict[Key, int] = {}
        self.held: dict[int, set[Key]] = {}
        self.adjacent: dict[Key, list[tuple[Key, Key]]] = {}
        self.made: set[tuple[Key, Key]] = set()
        self.blocked: set[Key] = set()
        # Every candidate raised, by profile pair (a < b), as ``merge_candidates`` keeps them.
        self.raised: dict[tuple[int, int], OpenCandidate] = {}
        self.closed: set[tuple[int, int]] = set()
        self.merged_into: dict[int, int] = {}
        self.profiles = 0

    def resolve(self, keys: tuple[Key, ...], raw: tuple[Key, ...], at: dt.datetime) -> None:
        """One signal, as ``resolve_many`` resolves it; ``raw`` holds only the raw phones it creates."""
        missing = [k for k in keys if k not in self.owner]
        if missing:
            known = next((k for k in keys if k in self.owner), None)
            profile = self.owner[known] if known is not None else self._new_profile()
            for key in missing:
                self._place(key, profile)
        if len(keys) > 1:
            self._link(keys)
        owners = {self.owner[k] for k in keys}
        if len(owners) > 1 or (missing and len(keys) > 1):
            self._repartition(keys, at, frozenset(missing))
        for key in raw:
            self._place(key, self.owner[keys[0]])

    def _new_profile(self) -> int:
        self.profiles += 1
        self.held[self.profiles] = set()
        return self.profiles

    def _place(self, key: Key, profile: int) -> None:
        before = self.owner.get(key)
        if before is not None:
            self.held[before].discard(key)
        self.owner[key] = profile
        self.held[profile].add(key)

    def _link(self, keys: tuple[Key, ...]) -> None:
        """Note the links the signal creates (the history knows each pair's first sighting)."""
        for i, a in enumerate(keys):
            for b in keys[i + 1 :]:
                pair = (a, b) if (a, b) in self.all_links else (b, a)
                if pair in self.all_links and pair not in self.made:
                    self.made.add(pair)
                    self.adjacent.setdefault(a, []).append(pair)
                    self.adjacent.setdefault(b, []).append(pair)

    def _walk(self, start: tuple[Key, ...]) -> set[Key]:
        """``identity_links.load_component``: links of unblocked identifiers and profile mates, capped."""
        nodes: set[Key] = set()
        frontier = set(start)
        while frontier and len(nodes) < MAX_COMPONENT:
            nodes |= frontier
            nxt: set[Key] = set()
            for key in frontier:
                if key not in self.blocked:
                    for pair in self.adjacent.get(key, ()):
                        nxt.update(pair)
            for profile in {self.owner[k] for k in frontier}:
                nxt |= self.held[profile]
            frontier = nxt - nodes
        return nodes

    def _repartition(self, keys: tuple[Key, ...], at: dt.datetime, newcomers: frozenset) -> None:
        """``resolution._repartition`` on the neighbourhood, with profile numbers for rows."""
        nodes = {k for k in self._walk(keys) if k[0] != "raw_phone"}
        pairs = {p for k in nodes for p in self.adjacent.get(k, ()) if p[0] in nodes and p[1] in nodes}
        part = identity_graph.partition(
            {k: self.all_first[k] for k in nodes},
            [self.all_links[p] for p in sorted(pairs, key=self.link_order.__getitem__)],
            same=[p for p in self.same if p[0] in nodes and p[1] in nodes],
            not_same=[p for p in self.not_same if p[0] in nodes and p[1] in nodes],
            blocked=[k for k in nodes if k in self.blocked],
            max_per_kind=self.max_per_kind,
            max_people=self.max_people,
            settle_before=at,
        )
        self.blocked |= part.lasting
        owner = {k: self.owner[k] for k in nodes}
        home, merged = plan_homes(
            part, owner, self.all_first, {p: p for p in owner.values()}, self._new_profile, newcomers
        )
        for winner, loser in merged:
            self._merge(winner, loser)
        touched: set[int] = set()
        for key in nodes:
            target = home[part.root_of[key]]
            if self.owner[key] != target:
                touched.update((self.owner[key], target))
                self._place(key, target)
        if touched:
            self._repoint(touched)
        for a, b, cand in candidate_pairs(part, home):
            self.raised.setdefault((a, b), OpenCandidate(cand.reason, cand))

    def _repoint(self, touched: set[int]) -> None:
        """``resolution._repoint_candidates``: open candidates of the profiles whose identifiers moved
        name the profiles now holding their evidence; one naming a pair already raised, or nobody, goes."""
        moves: dict[tuple[int, int], tuple[int, int] | None] = {}
        for pair, open_cand in self.raised.items():
            if pair in self.closed or not touched & set(pair):
                continue
            live = tuple(sorted(self.live(p) for p in pair))
            keys = {k for s in open_cand.candidate.links for k in (s.a, s.b)}
            sides = candidate_sides(live, {self.owner[k] for k in keys if k in self.owner})
            if sides != live:
                moves[pair] = sides
        if not moves:
            return
        taken = set(self.raised)
        kept: dict[tuple[int, int], OpenCandidate] = {}
        for pair, open_cand in self.raised.items():  # in the order raised, as candidate ids grow
            if pair not in moves:
                kept[pair] = open_cand
            elif moves[pair] is not None and moves[pair] not in taken:
                taken.add(moves[pair])
                kept[moves[pair]] = open_cand
        self.raised = kept

    def _merge(self, winner: int, loser: int) -> None:
        """``merges.merge``: every identifier moves; only a candidate between the two closes.

        Candidates are history, not profile rows: one naming the loser and a third
        profile stays as it is (``open_candidates`` reads it through the merge).
        """
        for key in list(self.held[loser]):
            self._place(key, winner)
        del self.held[loser]
        self.merged_into[loser] = winner
        self.closed.add((min(winner, loser), max(winner, loser)))

    def live(self, profile: int) -> int:
        """The profile a merged-away profile lives on in (``identifiers.live_profile``)."""
        while profile in self.merged_into:
            profile = self.merged_into[profile]
        return profile

    def open_candidates(self) -> list[tuple[int, int, OpenCandidate]]:
        """The open candidates between live profiles, each pair once (the first raised)."""
        out: dict[tuple[int, int], OpenCandidate] = {}
        for pair, cand in self.raised.items():
            if pair in self.closed:
                continue
            a, b = sorted(self.live(p) for p in pair)
            if a != b:
                out.setdefault((a, b), cand)
        return [(a, b, cand) for (a, b), cand in out.items()]
