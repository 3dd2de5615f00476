"""``resolve_many`` leaves exactly what ``resolve`` on each signal in turn leaves.

Both paths run on two fresh shops with the same signals; the whole identity
state is then compared with database ids replaced by their rank in the shop
(profiles, identifiers and links are created in the same order by both):
identifiers with owners, timestamps, sources and blocks; links; profiles
with merges; merges; candidates with evidence; and the profile each
signal's event ends on.
"""

import datetime as dt
import itertools
import os

import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.extensions import db
from app.models import Event, Identifier, IdentifierLink, Merge, MergeCandidate, Profile
from app.services.identifiers import Ident
from app.services.resolution import Signal, resolve_many
from tests.helpers import statements
from tests.identity_helpers import T0, feed, sarah_signals, store_signal_event
from tests.test_identity_properties import POOL, make_shop

SHOP_NUMBER = itertools.count()
POOL_WITH_RAW = [*POOL, ("raw_phone", "12345"), ("amazon_buyer", "AMZ1"), ("amazon_buyer", "AMZ2")]
signal = st.tuples(
    st.lists(st.sampled_from(POOL_WITH_RAW), min_size=1, max_size=4, unique=True),
    st.integers(min_value=0, max_value=12),
)
EXAMPLES = settings(
    derandomize=True,
    max_examples=int(os.environ.get("C360_HYPOTHESIS_EXAMPLES", "25")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def _signals(drawn):
    return [
        ([Ident(k, v) for k, v in idents], T0 + dt.timedelta(hours=h), "test", f"s{n}")
        for n, (idents, h) in enumerate(drawn)
    ]


def feed_batches(shop, signals, size):
    """Like ``feed``, but through ``resolve_many`` in batches, events written after each batch."""
    for start in range(0, len(signals), size):
        chunk = signals[start : start + size]
        batch = [Signal(tuple(i), source, at, {"event_ref": ref}) for i, at, source, ref in chunk]
        profiles = resolve_many(shop, batch)
        for n, ((idents, at, source, ref), profile) in enumerate(zip(chunk, profiles, strict=True)):
            if profile is not None:
                store_signal_event(shop, profile, idents, at, source, f"{ref}-{start + n}")
        db.session.flush()


def state(shop_id: int) -> dict:
    """The shop's identity state with ids replaced by their rank among the shop's rows."""
    db.session.expire_all()

    def ranks(model):
        ids = db.session.scalars(sa.select(model.id).where(model.shop_id == shop_id).order_by(model.id))
        return {i: n for n, i in enumerate(ids)}

    pr, ir = ranks(Profile), ranks(Identifier)
    pr[None] = None
    rows = lambda model: db.session.scalars(  # noqa: E731
        sa.select(model).where(model.shop_id == shop_id).order_by(model.id)
    )
    return {
        "identifiers": [
            (i.kind, i.value, pr[i.profile_id], i.source, i.blocked_reason, i.first_seen_at, i.last_seen_at)
            for i in rows(Identifier)
        ],
        "links": sorted(
            (ir[k.a_id], ir[k.b_id], k.relation, k.source, k.event_ref, k.first_seen_at, k.last_seen_at)
            for k in rows(IdentifierLink)
        ),
        "profiles": [(pr[p.merged_into_id], p.first_seen_at, p.last_seen_at) for p in rows(Profile)],
        "merges": [
            (pr[m.winner_id], pr[m.loser_id], m.reason, m.automatic, *_times_kept(m.snapshot))
            for m in rows(Merge)
        ],
        "candidates": [
            (pr[c.profile_a_id], pr[c.profile_b_id], c.reason, c.status, c.evidence)
            for c in rows(MergeCandidate)
        ],
        "events": sorted((e.external_id, pr[e.profile_id]) for e in rows(Event) if e.type == "signal"),
    }


def _times_kept(snapshot: dict) -> tuple:
    """The two profiles' first and last seen as the merge kept them for undo."""
    return tuple(
        snapshot[side][f"{end}_seen_at"] for side in ("winner", "loser") for end in ("first", "last")
    )


def both(signals, size):
    one = make_shop(f"seq{next(SHOP_NUMBER)}.myshopify.com")
    many = make_shop(f"bat{next(SHOP_NUMBER)}.myshopify.com")
    feed(one, signals)
    feed_batches(many, signals, size)
    return state(one.id), state(many.id)


@EXAMPLES
@given(
    drawn=st.lists(signal, min_size=1, max_size=int(os.environ.get("C360_HYPOTHESIS_SIGNALS", "14"))),
    size=st.integers(min_value=1, max_value=16),
    in_time_order=st.booleans(),
)
def test_resolve_many_leaves_what_resolve_on_each_leaves(db, drawn, size, in_time_order):
    if in_time_order:
        drawn = sorted(drawn, key=lambda s: s[1])
    sequential, batched = both(_signals(drawn), size)
    assert batched == sequential


def test_sarah_through_one_batch_is_sarah_one_signal_at_a_time(db, fixtures_dir):
    sequential, batched = both(sarah_signals(fixtures_dir), 100)
    assert batched == sequential
    assert len(batched["candidates"]) == 1


def test_a_batch_returns_the_live_profile_of_each_signal(db):
    shop = make_shop(f"live{next(SHOP_NUMBER)}.myshopify.com")
    w1, w2, e = Ident("web_client", "w1"), Ident("web_client", "w2"), Ident("email", "a@mail.uk")
    at = [T0 + dt.timedelta(hours=h) for h in range(4)]
    out = resolve_many(
        shop,
        [Signal((w1,), "pixel", at[0]), Signal((w2,), "pixel", at[1]), Signal((w1, e), "pixel", at[2])]
        + [Signal((w2, e), "pixel", at[3]), Signal((Ident("email", "test@test.com"),), "pixel", at[3])],
    )
    assert out[4] is None
    assert len({p.id for p in out[:4]}) == 1 and out[0].merged_into_id is None
    assert db.session.scalar(sa.select(sa.func.count(Merge.id)).where(Merge.shop_id == shop.id)) == 1


def test_a_batch_names_new_people_without_flushing_each_one(db):
    """On PostgreSQL new profiles, identifiers and links take ids drawn ahead (``id_blocks``):
    a batch of new people and their links is written by the one flush at its end, in creation order."""
    shop = make_shop(f"ids{next(SHOP_NUMBER)}.myshopify.com")
    signals = [
        Signal((Ident("web_client", f"c{n}"),), "pixel", T0 + dt.timedelta(minutes=n), {"event_ref": f"v{n}"})
        for n in range(6)
    ] + [
        Signal(
            (Ident("email", f"p{n}@mail.uk"), Ident("web_client", f"c{n}")),
            "pixel",
            T0 - dt.timedelta(minutes=n),  # earlier than the cookie's first sighting: a re-partition
            {"event_ref": f"f{n}"},
        )
        for n in range(6)
    ]
    flushes = []
    sa.event.listen(db.session(), "before_flush", lambda *_: flushes.append(1))
    profiles = resolve_many(shop, signals)
    if db.engine.dialect.name == "postgresql":  # SQLite names rows only by inserting them
        assert len(flushes) == 1
    assert len({p.id for p in profiles}) == 6
    emails = db.session.scalars(
        sa.select(Identifier.value)
        .where(Identifier.shop_id == shop.id, Identifier.kind == "email")
        .order_by(Identifier.id)
    ).all()
    assert emails == [f"p{n}@mail.uk" for n in range(6)]


def test_a_batch_writes_the_times_it_moves_with_one_statement_per_table_and_change(db):
    """First and last seen wait in ``DeferredStamps`` and go out grouped by what changed; the ORM
    would write a statement per run of rows with the same change, in id order: here one per row."""
    shop = make_shop(f"stamps{next(SHOP_NUMBER)}.myshopify.com")
    people = [(Ident("email", f"p{n}@mail.uk"), Ident("web_client", f"c{n}")) for n in range(8)]
    resolve_many(shop, [Signal(p, "pixel", T0, {"event_ref": f"a{n}"}) for n, p in enumerate(people)])
    db.session.commit()
    # Every other person is seen later (last seen moves), the others earlier (first seen moves).
    at = [T0 + dt.timedelta(hours=1 if n % 2 else -1) for n in range(8)]
    again = [Signal(p, "pixel", at[n], {"event_ref": f"b{n}"}) for n, p in enumerate(people)]
    with statements() as sent:
        resolve_many(shop, again)
    updates = sorted(s.split(" SET ")[0] for s in sent if s.startswith("UPDATE"))
    assert updates == [f"UPDATE {t}" for t in ("identifier_links", "identifiers", "profiles") for _ in (0, 1)]
    db.session.commit()
    db.session.expire_all()
    for model in (Identifier, IdentifierLink, Profile):
        rows = db.session.execute(
            sa.select(model.first_seen_at, model.last_seen_at).where(model.shop_id == shop.id)
        ).all()
        assert sorted(rows) == sorted(
            [(T0 - dt.timedelta(hours=1), T0)] * (len(rows) // 2)
            + [(T0, T0 + dt.timedelta(hours=1))] * (len(rows) // 2)
        )


def test_merges_leave_the_times_they_move_to_the_end_of_the_batch(db):
    """A merge reloads its two profiles and names each side by its identifiers' first seen; their
    pending last seen stays pending through it, set on the reloaded profiles again, and goes out
    with everyone's at the end of the batch. Writing every pending stamp before each merge wrote a
    busy link's last seen once per merge; writing the pair's, a statement per table and merge."""
    shop = make_shop(f"merge-stamps{next(SHOP_NUMBER)}.myshopify.com")
    people = [(Ident("email", f"p{n}@mail.uk"), Ident("web_client", f"c{n}")) for n in range(4)]
    visitors = [Ident("web_client", f"v{n}") for n in range(4)]
    resolve_many(
        shop,
        [Signal(p, "pixel", T0, {"event_ref": f"a{n}"}) for n, p in enumerate(people)]
        + [Signal((v,), "pixel", T0, {"event_ref": f"v{n}"}) for n, v in enumerate(visitors)],
    )
    db.session.commit()
    later = T0 + dt.timedelta(hours=1)
    interleaved = []
    for n, person in enumerate(people):
        # The person's link is seen later (its last seen moves), then a visitor joins them (a merge).
        interleaved.append(Signal(person, "pixel", later, {"event_ref": f"b{n}"}))
        interleaved.append(Signal((person[0], visitors[n]), "pixel", T0, {"event_ref": f"j{n}"}))
    with statements() as sent:
        resolve_many(shop, interleaved)
    assert db.session.scalar(sa.select(sa.func.count(Merge.id)).where(Merge.shop_id == shop.id)) == 4
    last_seen = [s.split(" SET ")[0] for s in sent if s.startswith("UPDATE") and "last_seen_at" in s]
    assert sorted(last_seen) == ["UPDATE identifier_links", "UPDATE identifiers", "UPDATE profiles"]
    db.session.commit()
    db.session.expire_all()
    theirs = sa.select(Identifier.id).where(
        Identifier.shop_id == shop.id, Identifier.value.in_({i.value for p in people for i in p})
    )
    link_times = db.session.scalars(
        sa.select(IdentifierLink.last_seen_at).where(
            IdentifierLink.shop_id == shop.id,
            IdentifierLink.a_id.in_(theirs),
            IdentifierLink.b_id.in_(theirs),
        )
    )
    assert sorted(link_times) == [later] * 4
    live = db.session.scalars(
        sa.select(Profile.last_seen_at).where(Profile.shop_id == shop.id, Profile.merged_into_id.is_(None))
    ).all()
    assert sorted(live) == [later] * 4


def test_a_batch_reads_each_known_identifier_by_value_and_not_again_by_id(db):
    """The batch's graph starts from the rows the batch read by value: its walk reads only what
    lies beyond them (the people's other identifiers, by profile), not the same rows again by id."""
    shop = make_shop(f"walk{next(SHOP_NUMBER)}.myshopify.com")
    people = [(Ident("email", f"p{n}@mail.uk"), Ident("web_client", f"c{n}")) for n in range(5)]
    resolve_many(shop, [Signal(p, "pixel", T0, {"event_ref": f"a{n}"}) for n, p in enumerate(people)])
    db.session.commit()
    later = T0 + dt.timedelta(hours=1)
    again = [Signal(p, "pixel", later, {"event_ref": f"b{n}"}) for n, p in enumerate(people)]
    with statements() as sent:
        resolve_many(shop, again)
    reads = [s for s in sent if s.startswith("SELECT") and "\nFROM identifiers" in s]
    assert len(reads) == 2, reads  # by value, then the people's identifiers by profile
    assert "identifiers.value" in reads[0] and "identifiers.profile_id" in reads[1].split("WHERE")[1]


@EXAMPLES
@given(
    drawn=st.lists(signal, min_size=1, max_size=int(os.environ.get("C360_HYPOTHESIS_SIGNALS", "14"))),
    size=st.integers(min_value=1, max_value=16),
)
def test_times_held_back_for_the_batch_end_leave_what_writing_them_at_once_leaves(db, drawn, size):
    """``DeferredStamps`` keeps a batch's first and last seen pending across its merges (set on the
    merged profiles again after the merge's reload, taken back after it): the outcome, the merges'
    undo snapshots included, is what plain ORM writes of each change as it happens leave."""
    from unittest import mock

    from app.services.deferred_stamps import DeferredStamps

    def at_once(self, obj, **values):
        for name, value in values.items():
            setattr(obj, name, value)

    signals = _signals(sorted(drawn, key=lambda s: s[1]) if size % 2 else drawn)
    held = make_shop(f"held{next(SHOP_NUMBER)}.myshopify.com")
    plain = make_shop(f"plain{next(SHOP_NUMBER)}.myshopify.com")
    feed_batches(held, signals, size)
    with mock.patch.object(DeferredStamps, "set", at_once):
        feed_batches(plain, signals, size)
    assert state(held.id) == state(plain.id)
