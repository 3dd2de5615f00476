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
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import sqlalchemy as sa
import sqlalchemy.orm as so

from app.extensions import db
from app.models import Event, Identifier, MergeCandidate, Order, Profile, Shop
from app.services import identity_graph, identity_links, merges
from app.services.counters import recompute_order_counters
from app.services.engagement import recompute_engagement_counters
from app.services.identifiers import TRUST, Ident, normalise
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


def is_blocked(shop: Shop, ident: Ident, extra: Iterable[str] | None = None) -> bool:
    """Junk values that must never link anyone (defaults plus the shop's blocklist)."""
    value = ident.value.lower()
    if extra is None:
        extra = effective_settings(shop)["identity"]["blocked_values"]
    if value in DEFAULT_BLOCKED or value in {v.strip().lower() for v in extra}:
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


def resolve(
    shop: Shop,
    idents: Iterable[Ident],
    *,
    source: str,
    seen_at: dt.datetime,
    evidence: dict | None = None,
) -> Profile | None:
    """Return the profile these identifiers belong to, linking, merging and splitting as the rules say.

    Args:
        idents: identifiers seen together in one signal (already normalised).
        source: where they were seen (``shopify``, ``pixel``, ``whatsapp``…).
        seen_at: when the signal happened (its event time, not arrival time).
        evidence: ``{"event_ref": ..., ...}`` naming the signal for reviewers.

    Returns:
        The profile, or None when no usable identifier was given.
    """
    settings = effective_settings(shop)["identity"]
    extra = settings["blocked_values"]
    given = {i for i in idents if i.kind in TRUST}
    raw = sorted(i for i in given if i.kind == "raw_phone" and not is_blocked(shop, i, extra))
    usable = sorted(
        (i for i in given if i.kind != "raw_phone" and not is_blocked(shop, i, extra)),
        key=lambda i: (TRUST[i.kind], i.value),
    )
    if not usable:
        return None
    event_ref = _event_ref(evidence)
    rows, created, earlier = _ensure_identifiers(shop, usable, source, seen_at)
    ids = [rows[(i.kind, i.value)].id for i in usable]
    identity_links.record_sightings(shop.id, ids, source=source, at=seen_at, event_ref=event_ref)
    owners = {r.profile_id for r in rows.values()}
    # Nothing can change when the signal only repeats what one profile already holds,
    # or is a single identifier never seen before; everything else re-partitions.
    if earlier or len(owners) > 1 or (created and len(usable) > 1):
        db.session.flush()
        _repartition(shop, ids, settings, source, seen_at)
    best = rows[(usable[0].kind, usable[0].value)]
    profile = db.session.get(Profile, best.profile_id)
    if profile.last_seen_at is None or profile.last_seen_at < seen_at:
        profile.last_seen_at = seen_at
    if profile.first_seen_at is None or profile.first_seen_at > seen_at:
        profile.first_seen_at = seen_at
    _keep_raw_phones(shop, profile, raw, source, seen_at)
    db.session.flush()
    return profile


@dataclass(frozen=True)
class Signal:
    """Identifiers seen together in one signal, with where and when: one ``resolve`` call's arguments."""

    idents: tuple[Ident, ...]
    source: str
    seen_at: dt.datetime
    evidence: dict | None = None


def resolve_many(shop: Shop, signals: Sequence[Signal]) -> list[Profile | None]:
    """Resolve a batch of one shop's signals; the same result as ``resolve`` on each, in order.

    Ingest jobs call this once per batch of deliveries, so that a batch can
    share its reads and writes.
    """
    return [resolve(shop, s.idents, source=s.source, seen_at=s.seen_at, evidence=s.evidence) for s in signals]


def _event_ref(evidence: dict | None) -> str | None:
    """Name the signal for reviewers: ``event_ref``, else the first named source id ("order: 5001")."""
    evidence = evidence or {}
    ref = evidence.get("event_ref") or evidence.get("external_id") or evidence.get("event")
    if ref is None:
        named = [(key, value) for key, value in evidence.items() if value not in (None, "")]
        ref = f"{named[0][0].replace('_', ' ')}: {named[0][1]}" if named else None
    return None if ref is None else str(ref)[:255]


def _ensure_identifiers(shop: Shop, usable: list[Ident], source: str, seen_at: dt.datetime):
    """Load the signal's identifiers, creating missing ones on a provisional owner."""
    keys = [(i.kind, i.value) for i in usable]
    # The owners come in the same read: a signal from a known visitor costs one query here.
    stmt = (
        scoped(Identifier, shop.id)
        .where(identity_links.keys_match(keys))
        .options(so.joinedload(Identifier.profile))
    )
    rows = {(r.kind, r.value): r for r in db.session.scalars(stmt)}
    earlier = False
    for row in rows.values():
        if seen_at < row.first_seen_at:
            row.first_seen_at, row.source, earlier = seen_at, source[:40], True
        elif seen_at > row.last_seen_at:
            row.last_seen_at = seen_at
    missing = [k for k in keys if k not in rows]
    if missing:
        owner_id = next((rows[k].profile_id for k in keys if k in rows), None)
        if owner_id is None:
            profile = Profile(shop_id=shop.id, first_seen_at=seen_at, last_seen_at=seen_at)
            db.session.add(profile)
            db.session.flush()
            owner_id = profile.id
        for kind, value in missing:
            row = Identifier(
                shop_id=shop.id,
                profile_id=owner_id,
                kind=kind,
                value=value,
                source=source[:40],
                first_seen_at=seen_at,
                last_seen_at=seen_at,
            )
            db.session.add(row)
            rows[(kind, value)] = row
        db.session.flush()
    return rows, bool(missing), earlier


def _keep_raw_phones(
    shop: Shop, profile: Profile, raw: list[Ident], source: str, seen_at: dt.datetime
) -> None:
    """Keep unparseable phones on the profile as text; they never find or link anyone."""
    if not raw:
        return
    known = set(identity_links.identifier_ids(shop.id, [(i.kind, i.value) for i in raw]))
    for ident in raw:
        if (ident.kind, ident.value) not in known:
            db.session.add(
                Identifier(
                    shop_id=shop.id,
                    profile_id=profile.id,
                    kind=ident.kind,
                    value=ident.value,
                    source=source[:40],
                    first_seen_at=seen_at,
                    last_seen_at=seen_at,
                )
            )


def _repartition(shop: Shop, ids: list[int], settings: dict, source: str, seen_at: dt.datetime) -> None:
    """Re-partition the signal's neighbourhood and make the profiles match."""
    nodes, links = identity_links.load_component(shop.id, ids)
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
    part = identity_graph.partition(
        {k: r.first_seen_at for k, r in row_of.items()},
        sightings,
        same=same,
        not_same=apart,
        blocked=[k for k, r in row_of.items() if r.blocked_reason],
        max_per_kind=settings["max_identifiers_per_kind"],
        max_people=settings["max_people_per_identifier"],
        settle_before=seen_at,
    )
    for key in part.lasting:
        if row_of[key].blocked_reason is None:
            row_of[key].blocked_reason = "shared_by_many"
    home = _apply(shop, part, row_of, source, seen_at)
    _record_candidates(shop, part, home)


def _profile_rank(profile_id: int, keys: list, created: dict[int, dt.datetime]):
    best = min((TRUST[k[0]] for k in keys), default=99)
    return (best, created[profile_id], profile_id)


def _apply(shop: Shop, part: identity_graph.Partition, row_of: dict, source: str, seen_at: dt.datetime):
    """Merge, move and create profiles so that each person of ``part`` is one profile."""
    people = part.people()
    held: dict[int, list] = {}
    for key, row in row_of.items():
        held.setdefault(row.profile_id, []).append(key)
    created = {
        pid: at
        for pid, at in db.session.execute(
            sa.select(Profile.id, Profile.created_at).where(Profile.id.in_(list(held)))
        )
    }
    home: dict = {}
    taken: set[int] = set()
    for root in sorted(people, key=lambda k: (TRUST[k[0]], k[1])):
        available = {row_of[k].profile_id for k in people[root]} - taken
        if available:
            pid = min(available, key=lambda p: _profile_rank(p, held[p], created))
        else:
            fresh = Profile(shop_id=shop.id, first_seen_at=seen_at, last_seen_at=seen_at)
            db.session.add(fresh)
            db.session.flush()
            pid = fresh.id
        home[root] = pid
        taken.add(pid)
    # Profiles that are no person's home any more join the person of their best identifier.
    for pid in sorted(set(held) - taken):
        best = min(held[pid], key=lambda k: (TRUST[k[0]], row_of[k].first_seen_at, k[1]))
        winner_id = home[part.root_of[best]]
        winner, loser = merges.lock_profiles(shop, winner_id, pid)
        merges.merge(
            shop, winner, loser, reason=f"auto: linked by {source}", actor="resolution", automatic=True
        )
    touched: set[int] = set()
    for key, row in row_of.items():
        target = home[part.root_of[key]]
        if row.profile_id != target:
            touched.update((row.profile_id, target))
            row.profile_id = target
    if touched:
        db.session.flush()
        _rehome_events(shop, touched)
    return home


def _rehome_events(shop: Shop, profile_ids: set[int]) -> None:
    """After identifiers moved, events and orders follow the owner of their most trusted identifier."""
    owner = {
        (k, v): p
        for k, v, p in db.session.execute(
            scoped(Identifier, shop.id, Identifier.kind, Identifier.value, Identifier.profile_id).where(
                Identifier.profile_id.in_(profile_ids)
            )
        )
    }
    for event in db.session.scalars(scoped(Event, shop.id).where(Event.profile_id.in_(profile_ids))):
        for key in _event_keys(event.identifiers):
            if key in owner:
                event.profile_id = owner[key]
                break
    for order in db.session.scalars(scoped(Order, shop.id).where(Order.profile_id.in_(profile_ids))):
        found = [normalise("email", order.email), normalise("phone", order.phone, shop.country)]
        keys = [(i.kind, i.value) for i in found if i is not None and (i.kind, i.value) in owner]
        if keys:
            order.profile_id = owner[keys[0]]
    db.session.flush()
    for pid in profile_ids:
        profile = db.session.get(Profile, pid)
        if profile is not None:
            recompute_engagement_counters(profile)
            recompute_order_counters(profile)


def _event_keys(identifiers: dict) -> list[tuple[str, str]]:
    from app.services.arrivals import _event_keys as keys

    return keys(identifiers)


def _record_candidates(shop: Shop, part: identity_graph.Partition, home: dict) -> None:
    """Store each doubtful pair once, with the identifier and signals that raised it."""
    for cand in part.candidates:
        a, b = sorted((home[part.root_of[cand.roots[0]]], home[part.root_of[cand.roots[1]]]))
        if a == b:
            continue
        exists = db.session.scalar(
            scoped(MergeCandidate, shop.id, MergeCandidate.id).where(
                MergeCandidate.profile_a_id == a, MergeCandidate.profile_b_id == b
            )
        )
        if exists is not None:
            continue
        evidence = {
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
        db.session.add(
            MergeCandidate(
                shop_id=shop.id, profile_a_id=a, profile_b_id=b, reason=cand.reason, evidence=evidence
            )
        )
    db.session.flush()
