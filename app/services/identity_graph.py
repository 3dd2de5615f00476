"""The identity graph's partition: which identifiers are one person (pure, no database).

Rules (the README and docs/identity.md repeat them):

* Identifiers are nodes; two identifiers carried by the same signal (a
  checkout, an order, a logged-in page view, a popup) are linked, and the
  link remembers when it was first seen and by which signal.
* Trust: shopify_customer > email > phone > marketplace ids > web_client.
  A node only ever *attaches* to a more trusted neighbour; each node ends
  up in exactly one tree whose root is its person's anchor.
* Every Shopify customer id is a root: two different Shopify customer ids
  are never put together automatically. Marketplace ids are exclusive too:
  a person holds at most one id per marketplace.
* A node attaches when all its more trusted neighbours belong to ONE
  person: an email seen with one Shopify customer, a phone seen with one
  email, a cookie that submitted one email. That is the confident case
  and it merges automatically.
* When they belong to two or more people, the node is ambiguous (a
  household phone, a shared laptop, an email on two Shopify accounts): it
  glues nobody, and less trusted identifiers cannot attach through it
  either (a cookie seen only with a household phone stays on its own).
  It stays with the person it was seen with first (event time, then
  value, so arrival order never matters) and each other person becomes a
  merge candidate, with the node and the signals as evidence.
* A node whose more trusted neighbours belong to more than
  ``max_people`` people is blocked (``shared_by_many``): it becomes its own
  profile, links nobody and raises no more candidates. A block is lasting
  (it stays blocked) once it holds on the links seen before the signal
  being resolved; a block that only the signal's own instant justifies
  is re-decided by the next signal of that instant, so simultaneous
  signals decide it together whatever order they arrive in (a household
  phone seen with four people for an instant, until the same instant
  shows two of them are one). A signal older than the links already held
  re-decides them in time order (``lasting_blocks``).
* A person keeps at most ``max_per_kind`` identifiers of each kind; the
  next one (in first-seen order) starts a profile of its own.
* Human decisions win: ``same`` pairs (a merge a person made) join the
  two trees; a ``not_same`` pair (a rejected candidate, an undone merge)
  stops a node from attaching to that person and silences the candidate.

The result depends only on the set of links and decisions, never on the
order the signals arrived in, which is what makes resolution deterministic.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from app.services.identifiers import TRUST

Key = tuple[str, str]  # (kind, value)
EXCLUSIVE_KINDS = frozenset({"amazon_buyer", "ebay_user"})
REASON_BY_KIND = {
    "shopify_customer": "seen_together",
    "email": "shared_email",
    "phone": "shared_phone",
    "amazon_buyer": "shared_marketplace_id",
    "ebay_user": "shared_marketplace_id",
    "web_client": "shared_device",
}
EVIDENCE_LINKS = 4


@dataclass(slots=True)
class Sighting:
    """One link of the graph: two identifiers seen together, first at ``at``.

    Never changed once made, but not ``frozen``: a frozen dataclass's ``__init__`` costs
    four times a plain one, and reading a shop's history makes one per link.
    """

    a: Key
    b: Key
    at: dt.datetime
    source: str = ""
    event_ref: str | None = None


@dataclass
class Candidate:
    """Two people (by root) who may be one, and why."""

    roots: tuple[Key, Key]
    reason: str
    via: Key
    links: list[Sighting] = field(default_factory=list)


@dataclass
class Partition:
    """Where every node went: ``root_of[node]`` is its person's anchor."""

    root_of: dict[Key, Key]
    blocked: set[Key]
    candidates: list[Candidate]
    # The blocks that stay: decided on the links seen before ``settle_before`` (all of them without it).
    lasting: set[Key] = field(default_factory=set)

    def people(self) -> dict[Key, set[Key]]:
        """Group nodes by person: ``{root: {nodes}}``."""
        groups: dict[Key, set[Key]] = defaultdict(set)
        for node, root in self.root_of.items():
            groups[root].add(node)
        return dict(groups)


def trust(key: Key) -> int:
    """Lower is more trusted."""
    return TRUST[key[0]]


class _Union:
    def __init__(self):
        self.parent: dict[Key, Key] = {}

    def find(self, x: Key) -> Key:
        root = x
        while self.parent.get(root, root) != root:
            root = self.parent[root]
        while x != root:  # path compression
            self.parent[x], x = root, self.parent.get(x, x)
        return root

    def union(self, a: Key, b: Key) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            # The more trusted root stays the anchor (then the smaller value).
            keep, drop = sorted((ra, rb), key=lambda k: (trust(k), k[1]))
            self.parent[drop] = keep


class _Attacher:
    """The state of one partition run: who is placed where, and the doubts raised.

    Built for speed on a whole shop at once (the batch pass): each node keeps
    only its more trusted neighbours, trust is looked up once per node, and
    the members of each person are tracked only when a ``not_same`` needs them.
    """

    def __init__(self, nodes, sightings, not_same, blocked, max_per_kind, max_people):
        self.nodes = nodes
        self.max_per_kind, self.max_people = max_per_kind, max_people
        rank = self.rank = {k: TRUST[k[0]] for k in nodes}
        # More trusted neighbours, in sighting order; equally trusted pairs are only reviewed.
        up: dict[Key, list[tuple[Key, Sighting]]] = {}
        self.up = up
        self.peers: list[tuple[int, int, Key, Key, Sighting]] = []
        sightings = list(sightings)
        for n, s in enumerate(sightings):
            a, b = s.a, s.b
            ra, rb = rank.get(a), rank.get(b)
            if ra is None or rb is None:
                continue
            if ra > rb:
                low, high = a, b
            elif rb > ra:
                low, high = b, a
            else:
                if a != b:
                    self.peers.append((n, *((a, b) if a < b else (b, a)), s))
                continue
            above = up.get(low)
            if above is None:
                up[low] = [(high, s)]
            else:
                above.append((high, s))
        if self.peers:
            # Reviewed in the order the smaller node first appeared, then sighting order (as always).
            appeared = _appearance(sightings, rank)
            self.peers.sort(key=lambda p: (appeared[p[1]], p[0]))
        self.apart: dict[Key, set[Key]] = defaultdict(set)
        for a, b in not_same:
            self.apart[a].add(b)
            self.apart[b].add(a)
        self.blocked = {k for k in blocked if k in nodes}
        # Nodes seen with several people: they glue nobody, not even the weaker nodes below them.
        self.ambiguous: set[Key] = set()
        self.root_of: dict[Key, Key] = {}
        self.members: dict[Key, set[Key]] | None = defaultdict(set) if self.apart else None
        self.kinds: dict[tuple[Key, str], int] = {}
        self.candidates: list[Candidate] = []

    def place(self, node: Key, root: Key) -> None:
        """Put ``node`` with the person ``root`` (a more trusted node) and count it in its kind's cap."""
        self.root_of[node] = root
        if self.members is not None:
            self.members[root].add(node)
        count = (root, node[0])
        self.kinds[count] = self.kinds.get(count, 0) + 1

    def alone(self, node: Key) -> None:
        """Make ``node`` a person of its own. Not counted in ``kinds``: the cap is only ever read for
        a less trusted node, whose kind is never its root's."""
        self.root_of[node] = node
        if self.members is not None:
            self.members[node].add(node)

    def options(self, node: Key) -> dict[Key, tuple[dt.datetime, list[Sighting]]]:
        """The people ``node``'s more trusted neighbours belong to, with the earliest link to each."""
        found: dict[Key, tuple[dt.datetime, list[Sighting]]] = {}
        apart = self.apart.get(node) if self.members is not None else None
        blocked, ambiguous, root_of = self.blocked, self.ambiguous, self.root_of
        for other, sighting in self.up.get(node, ()):
            if other in blocked or other in ambiguous:
                continue
            root = root_of[other]
            if apart and apart & self.members[root]:
                continue
            known = found.get(root)
            if known is None:
                found[root] = (sighting.at, [sighting])
            else:
                known[1].append(sighting)
                if sighting.at < known[0]:
                    found[root] = (sighting.at, known[1])
        return found

    def attach(self, node: Key) -> None:
        """Place one node: alone, with its one person, or with the first of several (and doubt the rest)."""
        options = {} if node in self.blocked or node not in self.up else self.options(node)
        if len(options) > self.max_people:
            self.blocked.add(node)
            options = {}
        if not options:
            self.alone(node)
            return
        rank = self.rank
        ranked = (
            sorted(options, key=lambda r: (options[r][0], rank[r], r[1])) if len(options) > 1 else [*options]
        )
        chosen = ranked[0]
        exclusive = node[0] in EXCLUSIVE_KINDS
        if self.kinds.get((chosen, node[0]), 0) >= (1 if exclusive else self.max_per_kind):
            self.alone(node)
            if exclusive:
                links = options[chosen][1][:EVIDENCE_LINKS]
                self.candidates.append(Candidate((chosen, node), f"second_{node[0]}", node, links))
            return
        self.place(node, chosen)
        if len(ranked) > 1:
            self.ambiguous.add(node)
        for other_root in ranked[1:]:
            links = (options[chosen][1] + options[other_root][1])[:EVIDENCE_LINKS]
            self.candidates.append(Candidate((chosen, other_root), REASON_BY_KIND[node[0]], node, links))

    def peer_candidates(self, final: dict[Key, Key]) -> None:
        """Equally trusted identifiers seen together (two emails on one order) stay apart but are reviewed."""
        blocked = self.blocked
        for _n, node, other, sighting in self.peers:
            if final[node] != final[other] and node not in blocked and other not in blocked:
                self.candidates.append(Candidate((node, other), "seen_together", node, [sighting]))


def partition(
    nodes: dict[Key, dt.datetime],
    sightings: Iterable[Sighting],
    *,
    same: Iterable[tuple[Key, Key]] = (),
    not_same: Iterable[tuple[Key, Key]] = (),
    blocked: Iterable[Key] = (),
    max_per_kind: int = 10,
    max_people: int = 3,
    settle_before: dt.datetime | None = None,
) -> Partition:
    """Split ``nodes`` (key → first seen) into people following the module's rules.

    Args:
        sightings: the ``seen`` links among the nodes (each pair once, earliest time).
        same / not_same: human decisions between two nodes.
        blocked: nodes already blocked as shared by too many people (sticky).
        settle_before: the instant being resolved; only blocks that hold on the links
            seen before it are ``lasting`` (see the module's rules). None: every block lasts.
    """
    sightings = list(sightings)
    same, not_same = list(same), list(not_same)
    lasting = {k for k in blocked if k in nodes}
    if settle_before is not None:
        before = [s for s in sightings if s.at < settle_before]
        if _may_block(before, lasting, max_people):
            earlier = {k: t for k, t in nodes.items() if t < settle_before}
            lasting = _partition(earlier, before, same, not_same, lasting, max_per_kind, max_people).blocked
    part = _partition(nodes, sightings, same, not_same, lasting, max_per_kind, max_people)
    part.lasting = lasting if settle_before is not None else set(part.blocked)
    return part


def lasting_blocks(
    nodes: dict[Key, dt.datetime],
    sightings: list[Sighting],
    *,
    same: Iterable[tuple[Key, Key]] = (),
    not_same: Iterable[tuple[Key, Key]] = (),
    max_per_kind: int = 10,
    max_people: int = 3,
) -> set[Key]:
    """The lasting blocks resolving these links in time order leaves, from the links alone.

    Resolving a signal makes lasting the blocks that hold on the links seen before its
    instant, and they stay. A signal that arrives late (older than links already held)
    can show that a block decided without it never held in time order (the email that made
    one of a library computer's people ambiguous came first); so such a neighbourhood's
    blocks are re-decided here: instant by instant, in time order, as in-order delivery
    would have decided them, whatever order the signals came in.
    """
    same, not_same = list(same), list(not_same)
    ordered = sorted(sightings, key=lambda s: s.at)  # each instant's "before" is a prefix of it
    lasting: set[Key] = set()
    for n, sighting in enumerate(ordered):
        if n == 0 or sighting.at == ordered[n - 1].at:
            continue  # the first link of a new instant closes the prefix before it
        before = ordered[:n]
        if _may_block(before, lasting, max_people):
            earlier = {k: t for k, t in nodes.items() if t < sighting.at}
            lasting = _partition(earlier, before, same, not_same, lasting, max_per_kind, max_people).blocked
    return lasting


def may_block(sightings: list[Sighting], max_people: int) -> bool:
    """Whether an identifier is seen with more than ``max_people`` more trusted ones (it may be blocked)."""
    return _may_block(sightings, set(), max_people)


def _may_block(sightings: list[Sighting], blocked: set[Key], max_people: int) -> bool:
    """Whether any node has more trusted neighbours than ``max_people`` (else nothing can be blocked)."""
    above: dict[Key, set[Key]] = defaultdict(set)
    for s in sightings:
        if trust(s.a) != trust(s.b):
            low, high = (s.a, s.b) if trust(s.a) > trust(s.b) else (s.b, s.a)
            if low not in blocked:
                above[low].add(high)
    return any(len(v) > max_people for v in above.values())


def _appearance(sightings: list[Sighting], rank: dict[Key, int]) -> dict[Key, int]:
    """The order in which nodes first appear in the sightings among the nodes."""
    appeared: dict[Key, int] = {}
    for s in sightings:
        a, b = s.a, s.b
        if a in rank and b in rank and a != b:
            appeared.setdefault(a, len(appeared))
            appeared.setdefault(b, len(appeared))
    return appeared


def _partition(nodes, sightings, same, not_same, blocked, max_per_kind, max_people) -> Partition:
    run = _Attacher(nodes, sightings, not_same, blocked, max_per_kind, max_people)
    rank = run.rank
    # Most trusted first, then first seen: a node's neighbours above it are settled. The sort key
    # is built as tuples, not by a function called per node; a full tie keeps the nodes' order.
    order = sorted([(rank[k], t, k[1], n, k) for n, (k, t) in enumerate(nodes.items())])
    for *_key, node in order:
        run.attach(node)
    final = run.root_of
    if same:
        joined = _Union()
        for a, b in same:
            if a in run.root_of and b in run.root_of:
                joined.union(run.root_of[a], run.root_of[b])
        final = {node: joined.find(root) for node, root in run.root_of.items()}
    run.peer_candidates(final)
    return Partition(final, run.blocked, _distinct(run.candidates, final, run.apart))


def _distinct(
    candidates: list[Candidate], final: dict[Key, Key], apart: dict[Key, set[Key]]
) -> list[Candidate]:
    """One candidate per pair of final people; none for pairs a person said are different."""
    groups: dict[Key, set[Key]] = defaultdict(set)
    if any(apart.values()):
        for node, root in final.items():
            groups[root].add(node)
    seen: set[tuple[Key, Key]] = set()
    out = []
    for cand in candidates:
        a, b = (final[cand.roots[0]], final[cand.roots[1]])
        if a == b:
            continue
        pair = tuple(sorted((a, b)))
        if pair in seen or any(apart[n] & groups[b] for n in groups[a]):
            continue
        seen.add(pair)
        out.append(Candidate(pair, cand.reason, cand.via, cand.links))
    return out
