"""Identity resolution: which profile a set of identifiers seen together belongs to.

``resolve`` is the one entry point ingest calls, once per signal. Rules
(the README and docs/identity.md repeat them):

* Junk never links anyone: test@test.com, placeholder addresses (test@, email@,
  user@… at example.com/.net/.org), addresses at test.com and mailinator.com,
  noreply@/no-reply@ senders, 0000000000, 1234567890 and the like, and the
  shop's own ``identity.blocked_values``. Unparseable phones are kept on
  the profile as ``raw_phone`` and never link.
* The identifiers of one signal are linked pairwise (``identifier_links``).
  When a signal brings nothing new (known identifiers, known links, all on
  one profile) it resolves with one read. Otherwise the neighbourhood of
  the signal is re-partitioned by ``identity_graph.partition`` and the
  database is brought in line with the result: profiles that are now one
  person are merged automatically (a real, undoable merge), identifiers
  that belong to someone else move there with their events, new people
  get new profiles, and ambiguous links become merge candidates.
* The profile returned is the one holding the signal's most trusted
  identifier (a logged-in page view belongs to the Shopify customer, not
  to whoever used the cookie first).

Sarah (the seed story) therefore ends as one profile after accepting
exactly one candidate: her phone's cookie submitted her work email and
later logged in as Shopify customer 7001, whose profile already held her
personal email and phone. A cookie seen with two different people's
strong identifiers is exactly what a shared computer looks like, so it
does not glue them by itself; the Duplicates tab shows the pair with the
cookie and both page views as evidence.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterable, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from functools import partial

import sqlalchemy as sa
import sqlalchemy.orm as so

from app.extensions import db
from app.models import ConsentRecord, Event, Identifier, IdentifierLink, MergeCandidate, Order, Profile, Shop
from app.models.base import utcnow
from app.services import identity_graph, identity_links, merges, shop_lock
from app.services.arrivals import buyer_keys, event_keys, most_trusted, order_of
from app.services.bulk_sql import id_in, value_in
from app.services.consent import ADDRESS_KIND, OPTED_OUT, refresh_states
from app.services.counters import recompute_order_counters
from app.services.deferred_stamps import DeferredStamps
from app.services.engagement import recompute_engagement_counters
from app.services.id_blocks import IdBlocks
from app.services.identifiers import TRUST, Ident, live_profile, live_profiles, normalise_phone
from app.services.opt_out_holders import copy_to_holders
from app.services.shop_settings import effective_settings
from app.tenancy import scoped

DEFAULT_BLOCKED = frozenset(
    {"test@test.com", "test@example.com", "0000000000", "1234567890", "+10000000000", "+11234567890"}
)
JUNK_EMAIL_DOMAINS = frozenset({"test.com", "mailinator.com"})
# RFC 2606 domains: the placeholder addresses people type into forms are junk,
# but named addresses there (dave@example.net) are how test suites, sandboxes and
# provider samples spell real people, and an unsubscribe from one must count.
PLACEHOLDER_DOMAINS = frozenset({"example.com", "example.org", "example.net"})
PLACEHOLDER_LOCAL_PARTS = frozenset(
    {"test", "email", "user", "name", "example", "me", "you", "a", "abc", "asdf"}
)
JUNK_LOCAL_PARTS = ("noreply", "no-reply", "donotreply", "do-not-reply")


def blocked_values(identity: dict, country: str | None) -> frozenset[str]:
    """The shop's own blocklist from its identity settings, as ``is_blocked`` compares it.

    Each value trimmed and lower-cased, and a phone also in E.164 (the shop's country
    as the default region): identifiers are compared normalised, so "07700 900999"
    typed into the list must block ``+447700900999``.
    """
    out = set()
    for raw in identity["blocked_values"]:
        value = raw.strip().lower()
        out.add(value)
        if "@" not in value and sum(c.isdigit() for c in value) >= 6:
            phone = normalise_phone(value, country)
            if phone is not None and phone.kind == "phone":
                out.add(phone.value)
    return frozenset(out)


def is_blocked(shop: Shop, ident: Ident, extra: AbstractSet[str] | None = None) -> bool:
    """Junk values that must never link anyone (defaults plus the shop's blocklist).

    ``extra`` is the shop's ``blocked_values`` (read once per batch by callers that check many).
    """
    value = ident.value.lower()
    if extra is None:
        extra = blocked_values(effective_settings(shop)["identity"], shop.country)
    if value in DEFAULT_BLOCKED or value in extra:
        return True
    if ident.kind == "email":
        local, _, domain = value.partition("@")
        placeholder = domain in PLACEHOLDER_DOMAINS and local in PLACEHOLDER_LOCAL_PARTS
        return placeholder or domain in JUNK_EMAIL_DOMAINS or local.startswith(JUNK_LOCAL_PARTS)
    if ident.kind in ("phone", "raw_phone"):
        digits = re.sub(r"\D", "", value)
        # One digit repeated, or a run like 123456789 or 987654321: typed to get past a form.
        tail = digits[-9:]
        return len(set(tail)) <= 1 or tail in "01234567890123456789" or tail in "98765432109876543210"
    return False


def may_link(shop: Shop, ident: Ident, extra: AbstractSet[str]) -> bool | None:
    """One identifier's lot: True if it may link, False for a raw phone kept as text, None if dropped.

    Dropped: junk (``is_blocked``) and kinds that name nobody.
    """
    if ident.kind not in TRUST or is_blocked(shop, ident, extra):
        return None
    return ident.kind != "raw_phone"


def split_usable(
    shop: Shop, idents: Iterable[Ident], extra: AbstractSet[str]
) -> tuple[list[Ident], list[Ident]]:
    """The identifiers that may link, most trusted first, and the raw phones kept as text; junk dropped.

    ``resolve`` and ``resolve_many`` sort a signal with this, and the history backfill judges
    each value with ``may_link``, its rule, so they agree on what is junk and which identifier
    names the signal.
    """
    usable: list[Ident] = []
    raw: list[Ident] = []
    for ident in set(idents):
        lot = may_link(shop, ident, extra)
        if lot is not None:
            (usable if lot else raw).append(ident)
    # Most signals carry one or two identifiers: sort only when there is an order to find.
    if len(raw) > 1:
        raw.sort(key=lambda i: i.value)  # Ident has no order of its own
    if len(usable) > 1:
        usable.sort(key=lambda i: (TRUST[i.kind], i.value))
    return usable, raw


def resolve(
    shop: Shop,
    idents: Iterable[Ident],
    *,
    source: str,
    seen_at: dt.datetime,
    evidence: dict | None = None,
    sighting: bool = True,
) -> Profile | None:
    """Return the profile these identifiers belong to, linking, merging and splitting as the rules say.

    Args:
        idents: identifiers seen together in one signal (already normalised).
        source: where they were seen (``shopify``, ``pixel``, ``whatsapp``…).
        seen_at: when the signal happened (its event time, not arrival time).
        evidence: ``{"event_ref": ..., ...}`` naming the signal for reviewers.
        sighting: False for a signal that is not the person's doing (see ``Signal``).

    Returns:
        The profile, or None when no usable identifier was given.
    """
    batch = _Batch(shop)
    signal = batch.prepare(Signal(tuple(idents), source, seen_at, evidence, sighting))
    batch.load(signal)
    profile = batch.resolve(signal)
    batch.finish()
    return profile


@dataclass(frozen=True, slots=True)
class Signal:
    """Identifiers seen together in one signal, with where and when: one ``resolve`` call's arguments.

    ``evidence`` names the signal for reviewers: a dict of source ids, or the name
    already made (``event_ref``'s answer), which is what an import holds for each of
    its items (a string, not a dict per order).

    ``sighting`` is False for a provider's report on a message (delivered, bounced…):
    it resolves and links as any signal, but the profile's first and last seen are the
    person's own activity, so it moves neither (a profile it creates has none yet).
    """

    idents: tuple[Ident, ...]
    source: str
    seen_at: dt.datetime
    evidence: dict | str | None = None
    sighting: bool = True


def resolve_many(shop: Shop, signals: Sequence[Signal]) -> list[Profile | None]:
    """Resolve a batch of one shop's signals, in order, leaving what ``resolve`` on each would leave.

    Ingest jobs call this once per batch of deliveries. The batch reads every
    identifier it names (with its owner) and the links among them in a few
    queries up front, so a signal that brings nothing new (or one identifier
    never seen before) is resolved from memory, and new rows and changed
    timestamps are written together. A signal that changes who is who goes
    through the same re-partition ``resolve`` runs, at its place in the
    order, so the database ends exactly as after calling ``resolve`` on each
    signal in turn (``tests/test_identity_batch.py`` checks it).

    Two workers creating the same new identifier still collide on its unique
    key when the batch flushes: the IntegrityError ends the transaction and
    the deliveries are retried, as with ``resolve``.

    Returns:
        For each signal, the live profile holding its most trusted identifier once
        the whole batch is resolved (where ``resolve`` plus a later merge or move
        would have put the signal's rows), or None when it named nobody usable.
    """
    batch = _Batch(shop)
    prepared = [batch.prepare(s) for s in signals]
    batch.load(*prepared)
    for signal in prepared:
        batch.resolve(signal)
    batch.finish()
    return [batch.owner(signal) for signal in prepared]


@dataclass
class _Prepared:
    usable: list[Ident]
    raw: list[Ident]
    source: str
    seen_at: dt.datetime
    event_ref: str | None
    sighting: bool = True

    @property
    def keys(self) -> list[tuple[str, str]]:
        return [(i.kind, i.value) for i in self.usable]


class _Batch:
    """One shop's identifiers and links as read once for a batch of signals, kept current as it resolves.

    Invariant: every ``seen`` link between two identifiers of ``rows`` is in
    ``links`` (read with them, or created by this batch), so a signal whose
    identifiers are all here needs no query to know its links.
    """

    def __init__(self, shop: Shop):
        shop_lock.hold([shop.id])  # one resolver of the shop's graph at a time (see shop_lock)
        self.shop = shop
        self.settings = effective_settings(shop)["identity"]
        self.extra = blocked_values(self.settings, shop.country)
        self.rows: dict[tuple[str, str], Identifier] = {}
        self.links: dict[tuple[int, int], IdentifierLink] = {}
        # The neighbourhoods of every identifier of the batch, read once (None: too big, read per signal).
        self.graph: _Graph | None = None
        self.ids = IdBlocks()
        # First and last seen of the rows it read, written together at the end (see ``merge``).
        self.stamps = DeferredStamps()
        # Profiles this batch made and has not flushed yet, by their drawn id.
        self.made: dict[int, Profile] = {}

    def prepare(self, signal: Signal) -> _Prepared:
        """Drop junk and sort the signal's identifiers by trust (most trusted first)."""
        usable, raw = split_usable(self.shop, signal.idents, self.extra)
        return _Prepared(
            usable, raw, signal.source, signal.seen_at, event_ref(signal.evidence), signal.sighting
        )

    def load(self, *signals: _Prepared) -> None:
        """Read the signals' identifiers (with their profiles) and the seen links among them."""
        wanted = {(i.kind, i.value) for s in signals for i in (*s.usable, *s.raw)} - set(self.rows)
        if not wanted:
            return
        values = sorted({v for _k, v in wanted})
        found: list[Identifier] = []
        for chunk in _chunks(values, 500):
            # By value, which both databases answer from ix_identifiers_value; the kind is checked here.
            stmt = (
                scoped(Identifier, self.shop.id)
                .where(value_in(Identifier.value, chunk))
                .options(so.joinedload(Identifier.profile))
            )
            found += [r for r in db.session.scalars(stmt) if (r.kind, r.value) in wanted]
        new_ids = [r.id for r in found]
        self.rows.update(((r.kind, r.value), r) for r in found)
        all_ids = [r.id for r in self.rows.values() if r.id is not None]
        for chunk in _chunks(new_ids if len(all_ids) > 1 else [], 500):
            stmt = scoped(IdentifierLink, self.shop.id).where(
                IdentifierLink.relation == "seen",
                sa.or_(
                    sa.and_(id_in(IdentifierLink.a_id, chunk), id_in(IdentifierLink.b_id, all_ids)),
                    sa.and_(id_in(IdentifierLink.b_id, chunk), id_in(IdentifierLink.a_id, all_ids)),
                ),
            )
            self.links.update(((r.a_id, r.b_id), r) for r in db.session.scalars(stmt))
        if len(signals) > 1:
            self.graph = _Graph.read(self.shop.id, found)

    def resolve(self, signal: _Prepared) -> Profile | None:
        """``resolve`` for one signal against what the batch holds; flushes only when ids are needed."""
        if not signal.usable:
            return None
        seen_at, source = signal.seen_at, signal.source
        keys = signal.keys
        self._refresh(keys)
        newcomers = frozenset(k for k in keys if k not in self.rows)
        created, earlier = self._ensure(keys, source, seen_at, signal.sighting)
        rows = [self.rows[k] for k in keys]
        if len(rows) > 1:
            self._name_rows(rows)
            self._sightings([r.id for r in rows], source, seen_at, signal.event_ref)
        owners = {r.profile_id if r.profile_id is not None else id(r.profile) for r in rows}
        # Nothing can change when the signal only repeats what one profile already holds,
        # or is a single identifier never seen before; everything else re-partitions.
        if earlier or len(owners) > 1 or (created and len(rows) > 1):
            # The session's other changes wait for a query or a merge to flush them: most
            # re-partitions change nothing, and the batch's last flush writes each row once.
            self._name_rows(rows)
            component = None
            if self.graph is not None:
                self.graph.add_rows(rows)
                component = self.graph.component
            ids = [r.id for r in rows]
            _repartition(self.shop, ids, self.settings, source, seen_at, component, self, newcomers)
            if self.graph is not None:
                self.graph.resync()
            self._refresh(keys)
        profile = self._profile(rows[0])
        if signal.sighting and (profile.last_seen_at is None or profile.last_seen_at < seen_at):
            self.stamps.set(profile, last_seen_at=seen_at)
        if signal.sighting and (profile.first_seen_at is None or profile.first_seen_at > seen_at):
            self.stamps.set(profile, first_seen_at=seen_at)
        self._keep_raw_phones(profile, signal.raw, source, seen_at)
        return profile

    def _name_rows(self, rows: list[Identifier]) -> None:
        """Flush when a row or link the walk needs has no id yet (SQLite names them only by inserting)."""
        if any(r.id is None for r in rows) or (self.graph is not None and self.graph.pending()):
            db.session.flush()

    def owner(self, signal: _Prepared) -> Profile | None:
        """The live profile holding the signal's most trusted identifier now."""
        if not signal.usable:
            return None
        self._refresh(signal.keys[:1])
        return live_profile(self._profile(self.rows[signal.keys[0]]))

    def _profile(self, row: Identifier) -> Profile:
        # A row created by this batch and not flushed yet knows its profile only as an object.
        return row.profile if row.profile_id is None else self.get(row.profile_id)

    def get(self, profile_id: int) -> Profile:
        """The profile, from the session (a profile this batch made is not there until flushed)."""
        return self.made.get(profile_id) or db.session.get(Profile, profile_id)

    def merge(self, winner_id: int, loser_id: int, source: str) -> None:
        """Merge two profiles of the batch, their pending stamps kept pending (see ``DeferredStamps``).

        The merge names each side by its identifiers' first seen, read by SQL: a pending first
        seen of theirs is written first. The rest waits for ``finish``.
        """
        pair = {winner_id, loser_id}

        def first_seen_of_theirs(obj, values: dict) -> bool:
            return isinstance(obj, Identifier) and "first_seen_at" in values and obj.profile_id in pair

        self.stamps.write(only=first_seen_of_theirs)
        winner, loser = merges.lock_pair(self.shop, winner_id, loser_id)
        for profile in (winner, loser):
            self.stamps.reapply(profile)
        merges.merge(
            self.shop, winner, loser, reason=f"auto: linked by {source}", actor="resolution", automatic=True
        )
        for profile in (winner, loser):
            self.stamps.adopt(profile)

    def finish(self) -> None:
        """Write what the batch changed: the stamps together, then the session's rows."""
        self.stamps.write()
        db.session.flush()

    def new_id(self, seen_at: dt.datetime) -> int:
        """A new profile's id, for a re-partition's new person (named in creation order, as all)."""
        profile = self._new_profile(seen_at)
        if profile.id is None:
            db.session.flush()
        return profile.id

    def _refresh(self, keys: list[tuple[str, str]]) -> None:
        """Re-read, in one query, what a merge expired (the rows it moved or set aside)."""
        if not any(sa.inspect(self.rows[k]).expired for k in keys if k in self.rows):
            return
        stale = _expired_ids(self.rows.values())
        for chunk in _chunks(stale, 500):
            stmt = scoped(Identifier, self.shop.id).where(id_in(Identifier.id, chunk))
            db.session.scalars(stmt.options(so.joinedload(Identifier.profile))).all()
        stale = _expired_ids(self.links.values())
        for chunk in _chunks(stale, 500):
            db.session.scalars(sa.select(IdentifierLink).where(id_in(IdentifierLink.id, chunk))).all()

    def _ensure(
        self, keys: list[tuple[str, str]], source: str, seen_at: dt.datetime, sighting: bool = True
    ) -> tuple[bool, bool]:
        """Note the sighting on known identifiers; create missing ones on a provisional owner.

        The identifiers' own first and last seen are the graph's (when each was named), so they
        move for any signal; a new owner is seen at ``seen_at`` only if ``sighting``.

        Returns ``(created, earlier)``: whether any was missing, and whether the
        signal is earlier than an identifier's first sighting.
        """
        earlier = False
        for key in keys:
            row = self.rows.get(key)
            if row is None:
                continue
            if seen_at < row.first_seen_at:
                self.stamps.set(row, first_seen_at=seen_at, source=source[:40])
                earlier = True
            elif seen_at > row.last_seen_at:
                self.stamps.set(row, last_seen_at=seen_at)
        missing = [k for k in keys if k not in self.rows]
        if missing:
            known = next((self.rows[k] for k in keys if k in self.rows), None)
            if known is not None:
                owner = self._profile(known)
            else:
                owner = self._new_profile(seen_at if sighting else None)
            for kind, value in missing:
                self.rows[(kind, value)] = self._new_row(owner, kind, value, source, seen_at)
        return bool(missing), earlier

    def _new_profile(self, seen_at: dt.datetime | None) -> Profile:
        profile_id = self.ids.next(Profile.__table__)
        owner = Profile(id=profile_id, shop_id=self.shop.id, first_seen_at=seen_at, last_seen_at=seen_at)
        if profile_id is not None:
            # Its age decides which profile survives a merge: set now, not at the flush.
            owner.created_at = owner.updated_at = utcnow()
            self.made[profile_id] = owner
        db.session.add(owner)
        return owner

    def _new_row(self, owner: Profile, kind: str, value: str, source: str, seen_at: dt.datetime):
        row = Identifier(
            id=self.ids.next(Identifier.__table__),
            shop_id=self.shop.id,
            kind=kind,
            value=value,
            source=source[:40],
            first_seen_at=seen_at,
            last_seen_at=seen_at,
        )
        if owner.id is None:
            row.profile = owner
        else:
            row.profile_id = owner.id
        db.session.add(row)
        if self.graph is not None:
            self.graph.unflushed_rows.append(row)
        return row

    def _sightings(self, ids: list[int], source: str, seen_at: dt.datetime, event_ref: str | None) -> None:
        """Link every pair of ``ids`` as seen together (``identity_links.record_sightings``, from memory)."""
        made = identity_links.record_sightings(
            self.shop.id,
            ids,
            source=source,
            at=seen_at,
            event_ref=event_ref,
            known=self.links,
            new_id=lambda: self.ids.next(IdentifierLink.__table__),
            stamps=self.stamps,
        )
        self.links.update(((r.a_id, r.b_id), r) for r in made)
        if self.graph is not None:
            self.graph.unflushed += made

    def _keep_raw_phones(self, profile: Profile, raw: list[Ident], source: str, seen_at: dt.datetime) -> None:
        """Keep unparseable phones on the profile as text; they never find or link anyone."""
        for ident in raw:
            if (ident.kind, ident.value) not in self.rows:
                self.rows[(ident.kind, ident.value)] = self._new_row(
                    profile, ident.kind, ident.value, source, seen_at
                )


class _Graph:
    """The identifiers and links around a batch, read once, walked in memory like ``load_component``.

    Read from every identifier the batch names, it holds every neighbourhood a
    signal of the batch can have: the batch only adds links between its own
    identifiers and moves identifiers between profiles already held. Rows and
    links are the session's objects, so moves made by re-partitions and
    merges are seen as they happen.
    """

    LIMIT = 20_000

    def __init__(self):
        self.rows: dict[int, Identifier] = {}
        self.links: dict[int, IdentifierLink] = {}
        self.adjacent: dict[int, list[IdentifierLink]] = {}
        # Links the batch made since the last walk: they get their ids when the session flushes.
        self.unflushed: list[IdentifierLink] = []
        self.unflushed_rows: list[Identifier] = []
        # Which identifiers each profile holds, kept current by ``resync`` after each re-partition.
        self.held: dict[int, set[int]] = {}
        self.profile_of: dict[int, int] = {}
        self.last: dict[int, Identifier] = {}

    @classmethod
    def read(cls, shop_id: int, start: list[Identifier]) -> _Graph | None:
        """Walk out from the ``start`` rows (read already) as ``load_component`` does, with no cap but
        ``LIMIT`` for the whole."""
        graph = cls()
        graph.add_rows(start)
        walked: set[int] = set()
        frontier = {r.id for r in start}
        while frontier:
            rows = [graph.rows[i] for i in frontier if i in graph.rows]
            rows += _in_chunks(scoped(Identifier, shop_id), Identifier.id, frontier - set(graph.rows))
            graph.add_rows(rows)
            walked.update(frontier)
            open_ids = [r.id for r in rows if r.blocked_reason is None]
            links = _in_chunks(scoped(IdentifierLink, shop_id), IdentifierLink.a_id, open_ids)
            links += _in_chunks(scoped(IdentifierLink, shop_id), IdentifierLink.b_id, open_ids)
            graph.add_links(links)
            pids = {r.profile_id for r in rows}
            held = _in_chunks(scoped(Identifier, shop_id), Identifier.profile_id, pids)
            graph.add_rows(held)
            frontier = ({i for link in links for i in (link.a_id, link.b_id)} | {r.id for r in held}) - walked
            if len(graph.rows) > cls.LIMIT:
                return None
        # Links between two blocked identifiers were not followed by the walk, but belong to the component.
        blocked = [i for i, r in graph.rows.items() if r.blocked_reason is not None]
        if blocked:
            stmt = scoped(IdentifierLink, shop_id).where(IdentifierLink.b_id.in_(blocked))
            graph.add_links(_in_chunks(stmt, IdentifierLink.a_id, blocked))
        return graph

    def pending(self) -> bool:
        """Whether rows or links made since the last walk still wait for their ids (a flush)."""
        return any(x.id is None for x in self.unflushed) or any(x.id is None for x in self.unflushed_rows)

    def add_rows(self, rows) -> None:
        for row in rows:
            if row.id is not None and row.id not in self.rows:
                self.rows[row.id] = row
                self._place(row)

    def _place(self, row: Identifier) -> None:
        before, now = self.profile_of.get(row.id), row.profile_id
        if before != now:
            if before is not None:
                self.held[before].discard(row.id)
            self.held.setdefault(now, set()).add(row.id)
            self.profile_of[row.id] = now

    def resync(self) -> None:
        """Note the moves of the last re-partition: only its neighbourhood's identifiers can have moved.

        Its merges move whole profiles, and a profile's identifiers are all in the
        neighbourhood unless the walk was cut at the cap (or the database was read
        instead); then every row is checked.
        """
        cut = not self.last or len(self.last) >= identity_links.MAX_COMPONENT
        for row in (self.rows if cut else self.last).values():
            self._place(row)
        self.last = {}

    def add_links(self, links) -> None:
        for link in links:
            assert link.id is not None, "links join the graph once flushed"
            if link.id not in self.links:
                self.links[link.id] = link
                self.adjacent.setdefault(link.a_id, []).append(link)
                self.adjacent.setdefault(link.b_id, []).append(link)

    def component(self, start_ids) -> tuple[dict[int, Identifier], list[IdentifierLink]]:
        """``identity_links.load_component`` answered from memory (the same walk, the same cap)."""
        self.add_links(self.unflushed)
        self.add_rows(self.unflushed_rows)
        self.unflushed, self.unflushed_rows = [], []
        held = self.held
        nodes: dict[int, Identifier] = {}
        frontier = set(start_ids)
        while frontier and len(nodes) < identity_links.MAX_COMPONENT:
            if not frontier <= self.rows.keys():
                raise _NotHeld  # cannot happen by the class's invariant; the caller reads the database then
            rows = [self.rows[i] for i in frontier]
            nodes.update((r.id, r) for r in rows)
            nxt: set[int] = set()
            for row in rows:
                if row.blocked_reason is None:
                    for link in self.adjacent.get(row.id, ()):
                        nxt.update((link.a_id, link.b_id))
            for pid in {r.profile_id for r in rows}:
                nxt.update(held.get(pid, ()))
            frontier = nxt - set(nodes)
        links = {
            link.id: link
            for i in nodes
            for link in self.adjacent.get(i, ())
            if link.a_id in nodes and link.b_id in nodes
        }
        self.last = nodes
        return nodes, list(links.values())


class _NotHeld(Exception):
    """The batch's graph lacks an identifier a walk reached."""


def _in_chunks(stmt, column, values) -> list:
    values = sorted(values)
    out: list = []
    for chunk in _chunks(values, 500):
        out += db.session.scalars(stmt.where(id_in(column, chunk))).all()
    return out


def _expired_ids(objects) -> list[int]:
    # The id from the identity key: reading ``obj.id`` on an expired object would load it alone.
    states = (sa.inspect(o) for o in objects)
    return [state.identity[0] for state in states if state.expired and state.identity]


def _chunks(items: list, size: int):
    for start in range(0, len(items), size):
        yield items[start : start + size]


def event_ref(evidence: dict | str | None) -> str | None:
    """Name the signal for reviewers: ``event_ref``, else the first named source id ("order: 5001")."""
    if isinstance(evidence, str):
        return evidence[:255]  # named already
    evidence = evidence or {}
    ref = evidence.get("event_ref") or evidence.get("external_id") or evidence.get("event")
    if ref is None:
        named = [(key, value) for key, value in evidence.items() if value not in (None, "")]
        ref = f"{named[0][0].replace('_', ' ')}: {named[0][1]}" if named else None
    return None if ref is None else str(ref)[:255]


def _repartition(
    shop: Shop,
    ids: list[int],
    settings: dict,
    source: str,
    seen_at: dt.datetime,
    component,
    batch: _Batch,
    newcomers: frozenset = frozenset(),
) -> None:
    """Re-partition the signal's neighbourhood and make the profiles match.

    ``component`` loads the neighbourhood (a batch answers from memory); None has
    ``identity_links.load_component`` read it from the database. ``batch`` finds and
    makes profiles (it knows the ones it made and has not flushed yet) and writes what
    it holds back before a merge. ``newcomers``: the identifiers the signal itself just
    created (on the profile of one it holds), which claim no profile (``plan_homes``).
    """
    limits = {
        "max_per_kind": settings["max_identifiers_per_kind"],
        "max_people": settings["max_people_per_identifier"],
    }
    # A signal older than links held re-decides the neighbourhood's blocks in time order; a block
    # lifted opens the walk past it, so the neighbourhood is read again (a couple of times at most).
    for _attempt in range(3):
        row_of, sightings, same, apart = _neighbourhood(shop, ids, component)
        first_seen = {k: r.first_seen_at for k, r in row_of.items()}
        blocked = [k for k, r in row_of.items() if r.blocked_reason]
        if not _arrived_late(seen_at, sightings, blocked, limits["max_people"]):
            break
        blocked = identity_graph.lasting_blocks(first_seen, sightings, same=same, not_same=apart, **limits)
        lifted = [r for k, r in row_of.items() if r.blocked_reason is not None and k not in blocked]
        for row in lifted:  # a block that never held in time order
            row.blocked_reason = None
        if not lifted:
            break
    part = identity_graph.partition(
        first_seen,
        sightings,
        same=same,
        not_same=apart,
        blocked=blocked,
        settle_before=seen_at,
        **limits,
    )
    for key in part.lasting:
        if row_of[key].blocked_reason is None:
            row_of[key].blocked_reason = "shared_by_many"
    home = _apply(shop, part, row_of, source, seen_at, batch, newcomers)
    if not _aligned_out_of_order(shop, settings, ids, seen_at, sightings, row_of):
        _record_candidates(shop, part, home)


def _aligned_out_of_order(
    shop: Shop, settings: dict, ids: list[int], seen_at: dt.datetime, sightings: list, row_of: dict
) -> bool:
    """Whether the signal, delivered after a later one (or after another of its instant) where doubts
    can arise, brought the open candidates in line with time order (``candidate_history``).

    Then this partition's candidates are among them (time order's last step raises them);
    a signal in time order, the usual case, raises only this partition's, as before.
    """
    from app.services import candidate_history

    own = {k for k, r in row_of.items() if r.id in set(ids)}
    late_blocked = any(row_of[k].blocked_reason and row_of[k].last_seen_at > seen_at for k in own)
    if not candidate_history.arrived_out_of_order(seen_at, sightings, own, late_blocked):
        return False
    if not candidate_history.may_doubt(sightings, any(r.blocked_reason for r in row_of.values())):
        return False
    return candidate_history.align_open_candidates(shop, settings, ids) is not None


def _neighbourhood(shop: Shop, ids: list[int], component):
    """The signal's neighbourhood as the partition reads it: ``(row_of, sightings, same, not_same)``."""
    try:
        nodes, links = (component or partial(identity_links.load_component, shop.id))(ids)
    except _NotHeld:
        nodes, links = identity_links.load_component(shop.id, ids)
    # In the order the links were made, so that evidence lists them the same way however they were read.
    links = sorted(links, key=lambda link: link.id)
    nodes = {i: r for i, r in nodes.items() if r.kind != "raw_phone"}
    key_of = {i: (r.kind, r.value) for i, r in nodes.items()}
    row_of = {key_of[i]: r for i, r in nodes.items()}
    sightings, same, apart = [], [], []
    for link in links:
        if link.a_id not in key_of or link.b_id not in key_of:
            continue
        a, b = key_of[link.a_id], key_of[link.b_id]
        if link.relation == "seen":
            sightings.append(identity_graph.Sighting(a, b, link.first_seen_at, link.source, link.event_ref))
        else:
            (same if link.relation == "same" else apart).append((a, b))
    return row_of, sightings, same, apart


def _arrived_late(seen_at: dt.datetime, sightings: list, blocked: list, max_people: int) -> bool:
    """Whether this signal is older than links already held where blocks are in play: then the
    neighbourhood's blocks are re-decided in time order (``identity_graph.lasting_blocks``)."""
    if not sightings or seen_at >= max(s.at for s in sightings):
        return False
    return bool(blocked) or identity_graph.may_block(sightings, max_people)


def plan_homes(
    part: identity_graph.Partition,
    owner: dict,
    first_seen: dict,
    created: dict,
    fresh: Callable[[], int],
    newcomers: frozenset = frozenset(),
) -> tuple[dict, list[tuple[int, int]]]:
    """Choose each person's profile and the profiles that merge away (pure: the rule, not the writes).

    Each profile belongs to the person of the identifier it was known by: its most trusted,
    the first seen of those (then by value), among those it held before the signal. The
    signal's new identifiers were put on the profile of one it holds only until this
    partition: a second person arriving on a household phone or a shared laptop must not
    take over the first one's profile, with her consents, messages and name. A person keeps
    the best of the profiles that belong to them (most trusted identifier, then the older);
    the others merge into it; a person no profile belongs to gets a new one.

    Args:
        owner: ``{key: profile id}`` for every node of ``part`` now.
        first_seen: ``{key: first seen}`` for the same nodes.
        created: ``{profile id: sort key}`` giving the profiles' age (older first).
        fresh: makes a new profile and returns its id, for a person none of whose profiles is free.
        newcomers: the identifiers the signal created (they name no profile's person).

    Returns:
        ``home`` (``{root: profile id}``) and the ``(winner, loser)`` merges, in the order to run them.
    """
    people = part.people()
    held: dict[int, list] = {}
    for key, pid in owner.items():
        held.setdefault(pid, []).append(key)
    belongs: dict[int, object] = {}  # profile id: the root of the person it belongs to
    for pid, keys in held.items():
        known = [k for k in keys if k not in newcomers] or keys
        belongs[pid] = part.root_of[min(known, key=lambda k: (TRUST[k[0]], first_seen[k], k[1]))]
    theirs: dict = {}
    for pid, root in belongs.items():
        theirs.setdefault(root, []).append(pid)
    home: dict = {}
    for root in sorted(people, key=lambda k: (TRUST[k[0]], k[1])):
        mine = theirs.get(root)
        if mine:
            best = {p: min(TRUST[k[0]] for k in held[p]) for p in mine}
            home[root] = min(mine, key=lambda p: (best[p], created[p], p))
        else:
            home[root] = fresh()
    merged = [(home[belongs[pid]], pid) for pid in sorted(held) if home[belongs[pid]] != pid]
    return home, merged


def _apply(
    shop: Shop,
    part: identity_graph.Partition,
    row_of: dict,
    source: str,
    seen_at: dt.datetime,
    batch: _Batch,
    newcomers: frozenset = frozenset(),
):
    """Merge, move and create profiles so that each person of ``part`` is one profile."""
    owner = {key: row.profile_id for key, row in row_of.items()}
    # The profiles are usually in the session already (a batch read them with their identifiers).
    created = {pid: batch.get(pid).created_at for pid in set(owner.values())}
    fresh = partial(batch.new_id, seen_at)

    first_seen = {key: row.first_seen_at for key, row in row_of.items()}
    home, merged = plan_homes(part, owner, first_seen, created, fresh, newcomers)
    for winner_id, loser_id in merged:
        batch.merge(winner_id, loser_id, source)
    touched: set[int] = set()
    for key, row in row_of.items():
        target = home[part.root_of[key]]
        if row.profile_id != target:
            touched.update((row.profile_id, target))
            row.profile_id = target
    if touched:
        db.session.flush()
        _rehome_events(shop, touched)
        _repoint_candidates(shop, touched)
    return home


def candidate_sides(pair: tuple[int, int], holders: set[int]) -> tuple[int, int] | None:
    """The pair of profiles an open candidate names once identifiers moved between profiles.

    ``pair``: its two (live) profiles; ``holders``: the profiles now holding the identifiers
    of its evidence. A profile row whose identifiers all went to another person (a
    re-partition made it someone else's) no longer holds any: the candidate then names the
    two profiles that do, or nobody (None) when its evidence is now one profile's, or spread
    over more than two so that the pair it meant cannot be told.
    """
    if set(pair) <= holders:
        return pair
    if len(holders) == 2:
        a, b = sorted(holders)
        return a, b
    return None


def evidence_keys(evidence: dict) -> set[tuple[str, str]]:
    """The identifiers a stored candidate's evidence names: each link's two ends."""
    keys = set()
    for link in (evidence or {}).get("links", []):
        for end in (link.get("a"), link.get("b")):
            kind, _, value = str(end or "").partition(":")
            if value:
                keys.add((kind, value))
    return keys


def _repoint_candidates(shop: Shop, touched: set[int]) -> None:
    """Open candidates of profiles whose identifiers just moved name the profiles holding their evidence.

    Without this a candidate could name a profile row that a re-partition gave to another
    person (delivered out of order, a shared device's candidate came to name the wrong
    customer, and accepting it merged the wrong people). One that now names a pair already
    raised, or nobody, is removed: it was the same doubt, or none is left.
    """
    ids = sorted(touched)
    cands = list(
        db.session.scalars(
            scoped(MergeCandidate, shop.id)
            .where(
                MergeCandidate.status == "open",
                sa.or_(id_in(MergeCandidate.profile_a_id, ids), id_in(MergeCandidate.profile_b_id, ids)),
            )
            .order_by(MergeCandidate.id)
        )
    )
    if not cands:
        return
    owner = _owners(shop.id, set().union(*(evidence_keys(c.evidence) for c in cands)))
    live = live_profiles(shop.id, {p for c in cands for p in (c.profile_a_id, c.profile_b_id)})
    moves = {}
    for cand in cands:
        pair = tuple(sorted(live[p].id if p in live else p for p in (cand.profile_a_id, cand.profile_b_id)))
        sides = candidate_sides(pair, {owner[k] for k in evidence_keys(cand.evidence) if k in owner})
        if sides != pair:
            moves[cand] = sides
    if not moves:
        return
    wanted = sorted({sides for sides in moves.values() if sides is not None})
    taken = set()
    if wanted:
        taken = set(
            map(
                tuple,
                db.session.execute(
                    scoped(
                        MergeCandidate, shop.id, MergeCandidate.profile_a_id, MergeCandidate.profile_b_id
                    ).where(
                        id_in(MergeCandidate.profile_a_id, sorted({a for a, _ in wanted})),
                        id_in(MergeCandidate.profile_b_id, sorted({b for _, b in wanted})),
                    )
                ),
            )
        )
    for cand, sides in moves.items():  # oldest first: the first to claim a pair keeps it
        if sides is None or sides in taken:
            db.session.delete(cand)
        else:
            taken.add(sides)
            cand.profile_a_id, cand.profile_b_id = sides
    db.session.flush()


def _owners(shop_id: int, keys: set[tuple[str, str]]) -> dict[tuple[str, str], int]:
    """``{(kind, value): profile id}`` for those of ``keys`` the shop holds."""
    owner = {}
    for kind in sorted({k for k, _ in keys}):
        values = sorted(v for k, v in keys if k == kind)
        stmt = scoped(Identifier, shop_id, Identifier.value, Identifier.profile_id).where(
            Identifier.kind == kind, value_in(Identifier.value, values)
        )
        owner.update(((kind, v), p) for v, p in db.session.execute(stmt))
    return owner


def _rehome_events(shop: Shop, profile_ids: set[int]) -> None:
    """After identifiers moved, events and orders follow the owner of their most trusted identifier.

    An order's are its buyer's (``arrivals.buyer_keys``): a POS sale naming its buyer by a
    Shopify customer id stays with that customer, not with whoever now holds its phone.
    """
    owner = {
        (k, v): p
        for k, v, p in db.session.execute(
            scoped(Identifier, shop.id, Identifier.kind, Identifier.value, Identifier.profile_id).where(
                Identifier.profile_id.in_(profile_ids)
            )
        )
    }
    changed: set[int] = set()

    def follow(row, keys) -> None:
        key = most_trusted(keys, owner)
        if key is not None and row.profile_id != owner[key]:
            changed.update((row.profile_id, owner[key]))
            row.profile_id = owner[key]

    buyers = {}  # (channel, order id): the identifiers its order.placed event recorded
    for event in db.session.scalars(scoped(Event, shop.id).where(Event.profile_id.in_(profile_ids))):
        keys = event_keys(event.identifiers)
        follow(event, keys)
        if (placed := order_of(event)) is not None:
            buyers[placed] = keys
    for order in db.session.scalars(scoped(Order, shop.id).where(Order.profile_id.in_(profile_ids))):
        follow(order, buyer_keys(order, buyers, shop.country))
    consented = _rehome_consents(shop, profile_ids, owner)
    db.session.flush()
    # Counters are rebuilt from events and orders: a profile none of them left or joined keeps its own.
    for pid in sorted(changed | consented):
        profile = db.session.get(Profile, pid)
        if profile is None:
            continue
        if pid in changed:
            recompute_engagement_counters(profile)
            recompute_order_counters(profile)
        if pid in consented:
            refresh_states(profile)


def _rehome_consents(shop: Shop, profile_ids: set[int], owner: dict) -> set[int]:
    """The opt-outs of these profiles naming an address given to its new owner too
    (``opt_out_holders``); the profiles that received one."""
    stmt = scoped(ConsentRecord, shop.id).where(
        ConsentRecord.profile_id.in_(profile_ids),
        ConsentRecord.identifier.is_not(None),
        ConsentRecord.status == OPTED_OUT,
        ConsentRecord.channel.in_(sorted(ADDRESS_KIND)),
    )
    return copy_to_holders(db.session.scalars(stmt), shop.country, owner.get)


def _record_candidates(shop: Shop, part: identity_graph.Partition, home: dict) -> None:
    """Store each doubtful pair once, with the identifier and signals that raised it.

    The pairs already stored are read in one query: a household's phone raises the
    same pairs again at each re-partition of its people.
    """
    pairs: dict[tuple[int, int], identity_graph.Candidate] = {}
    for a, b, cand in candidate_pairs(part, home):
        pairs.setdefault((a, b), cand)
    if not pairs:
        return
    firsts, seconds = sorted({a for a, _ in pairs}), sorted({b for _, b in pairs})
    stored = db.session.execute(
        scoped(
            MergeCandidate,
            shop.id,
            MergeCandidate.profile_a_id,
            MergeCandidate.profile_b_id,
            MergeCandidate.status,
        ).where(id_in(MergeCandidate.profile_a_id, firsts), id_in(MergeCandidate.profile_b_id, seconds))
    )
    again = []
    for a, b, status in stored:
        if (a, b) in pairs:
            if status == "superseded":  # closed by a late signal, raised again since: a doubt again
                again.append(((a, b), pairs[(a, b)]))
            del pairs[(a, b)]
    _reopen(shop, again)
    for (a, b), cand in pairs.items():
        db.session.add(new_candidate(shop, a, b, cand))
    if pairs:
        db.session.flush()


def new_candidate(shop: Shop, a: int, b: int, cand: identity_graph.Candidate) -> MergeCandidate:
    """The stored candidate for the pair of profiles ``a`` < ``b`` a partition raised."""
    return MergeCandidate(
        shop_id=shop.id, profile_a_id=a, profile_b_id=b, reason=cand.reason, evidence=candidate_evidence(cand)
    )


def _reopen(shop: Shop, raised: list[tuple[tuple[int, int], identity_graph.Candidate]]) -> None:
    """Open again the superseded candidates of pairs a re-partition raises again."""
    from app.services.candidate_history import reopen

    for (a, b), cand in raised:
        row = db.session.scalars(
            scoped(MergeCandidate, shop.id).where(
                MergeCandidate.profile_a_id == a, MergeCandidate.profile_b_id == b
            )
        ).one()
        reopen(row, cand.reason, candidate_evidence(cand))


def candidate_pairs(part: identity_graph.Partition, home: dict):
    """Each candidate of ``part`` as ``(profile a, profile b, candidate)``, a < b; none within one profile."""
    for cand in part.candidates:
        a, b = sorted((home[part.root_of[cand.roots[0]]], home[part.root_of[cand.roots[1]]]))
        if a != b:
            yield a, b, cand


def candidate_evidence(cand: identity_graph.Candidate) -> dict:
    """What a reviewer sees of a candidate: the identifier that raised it and the signals that linked it."""
    return {
        "identifier": {"kind": cand.via[0], "value": cand.via[1]},
        "links": [
            {
                "a": f"{s.a[0]}:{s.a[1]}",
                "b": f"{s.b[0]}:{s.b[1]}",
                "source": s.source,
                "event": s.event_ref,
                "seen_at": s.at.isoformat(),
            }
            for s in cand.links
        ],
    }
