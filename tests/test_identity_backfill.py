"""The history backfill leaves what ``resolve_many`` leaves on the same signals in time order.

Compared on two fresh shops: the identifiers grouped by profile (raw phones
too), the blocked identifiers, and the open candidates as pairs of those
groups with their reason. The backfill writes no automatic merges (profiles
are born merged), so merges and closed candidates are not compared.
"""

import datetime as dt
import itertools
import os

import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.extensions import db
from app.models import Identifier, IdentifierLink, Merge, MergeCandidate, Profile
from app.services.identifiers import Ident, live_profile
from app.services.identity_backfill import resolve_history
from app.services.resolution import Signal, resolve_many
from app.services.shop_settings import update_settings
from tests.identity_helpers import T0, partition_of, sarah_signals
from tests.test_identity_batch import POOL_WITH_RAW
from tests.test_identity_properties import make_shop

SHOP_NUMBER = itertools.count()
EXAMPLES = settings(
    derandomize=True,
    max_examples=int(os.environ.get("C360_HYPOTHESIS_EXAMPLES", "25")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
signal = st.tuples(
    st.lists(st.sampled_from(POOL_WITH_RAW), min_size=1, max_size=4, unique=True),
    st.integers(min_value=0, max_value=12),
)


def as_signals(rows) -> list[Signal]:
    """``(idents, at, source, ref)`` rows as ``Signal``s."""
    return [Signal(tuple(idents), source, at, {"event_ref": ref}) for idents, at, source, ref in rows]


def sig(*pairs, at=0, source="shopify"):
    return ([Ident(k, v) for k, v in pairs], T0 + dt.timedelta(hours=at), source, f"ev{at}")


def outcome(shop_id: int) -> dict:
    """The people, blocks and open candidates of a shop, with no database ids.

    A candidate is read through merges, as the Duplicates tab shows it: between the
    live profiles its two sides were merged into, and not at all once they are one.
    """
    db.session.expire_all()
    groups: dict[int, frozenset] = {}
    for group in partition_of(shop_id):
        kind, value = next(iter(group))
        pid = db.session.scalar(
            sa.select(Identifier.profile_id).where(
                Identifier.shop_id == shop_id, Identifier.kind == kind, Identifier.value == value
            )
        )
        groups[pid] = group
    candidates = db.session.scalars(
        sa.select(MergeCandidate)
        .where(MergeCandidate.shop_id == shop_id, MergeCandidate.status == "open")
        .order_by(MergeCandidate.id)
    )
    pairs: dict[frozenset, str] = {}
    for cand in candidates:
        a, b = (live_profile(db.session.get(Profile, p)).id for p in (cand.profile_a_id, cand.profile_b_id))
        if a != b:
            pairs.setdefault(frozenset((groups[a], groups[b])), cand.reason)
    blocked = db.session.scalars(
        sa.select(Identifier.value).where(
            Identifier.shop_id == shop_id, Identifier.blocked_reason.is_not(None)
        )
    )
    return {"people": frozenset(groups.values()), "candidates": pairs, "blocked": set(blocked)}


def both(rows, batch: int = 5, identity: dict | None = None) -> tuple[dict, dict]:
    """Resolve ``rows`` in time order through ``resolve_many`` on one shop and the backfill on another."""
    incremental = make_shop(f"inc{next(SHOP_NUMBER)}.myshopify.com")
    backfill = make_shop(f"bf{next(SHOP_NUMBER)}.myshopify.com")
    for shop in (incremental, backfill) if identity else ():
        update_settings(shop, {"identity": identity})
    ordered = as_signals(sorted(rows, key=lambda r: r[1]))
    for start in range(0, len(ordered), batch):
        resolve_many(incremental, ordered[start : start + batch])
    resolve_history(backfill, as_signals(rows))
    db.session.flush()
    return outcome(incremental.id), outcome(backfill.id)


@EXAMPLES
@given(
    drawn=st.lists(signal, min_size=1, max_size=int(os.environ.get("C360_HYPOTHESIS_SIGNALS", "14"))),
    tight=st.booleans(),
)
def test_backfill_gives_the_people_and_candidates_resolve_many_gives(db, drawn, tight):
    rows = [
        ([Ident(k, v) for k, v in idents], T0 + dt.timedelta(hours=h), "test", f"s{n}")
        for n, (idents, h) in enumerate(drawn)
    ]
    # Tight guards make the per-kind cap and the too-many-people block trip on a small pool.
    limits = {"max_identifiers_per_kind": 1, "max_people_per_identifier": 2} if tight else None
    incremental, backfill = both(rows, identity=limits)
    assert backfill == incremental


def test_sarah_through_the_backfill_is_sarah_through_resolve_many(db, fixtures_dir):
    incremental, backfill = both(sarah_signals(fixtures_dir))
    assert backfill == incremental
    assert len(backfill["people"]) == 2
    assert list(backfill["candidates"].values()) == ["shared_device"]


def test_traps_through_the_backfill_end_as_through_resolve_many(db):
    household = [
        sig(("shopify_customer", "1"), ("email", "ann@home.uk"), ("phone", "+447700900001"), at=0),
        sig(("shopify_customer", "2"), ("email", "bob@home.uk"), ("phone", "+447700900001"), at=1),
    ]
    shared_computer = [
        sig(("web_client", "library-pc"), at=2, source="pixel"),
        sig(("web_client", "library-pc"), ("email", "cat@mail.uk"), at=3, source="pixel"),
        sig(("web_client", "library-pc"), ("email", "dan@mail.uk"), at=4, source="pixel"),
    ]
    junk = [
        sig(("web_client", "a"), ("email", "test@test.com"), at=5, source="pixel"),
        sig(("web_client", "b"), ("email", "TEST@test.com"), at=6, source="pixel"),
        sig(("web_client", "d"), ("phone", "+441234567890"), at=7, source="pixel"),
    ]
    email_change = [
        sig(("shopify_customer", "9"), ("email", "old@mail.uk"), at=8),
        sig(("email", "new@mail.uk"), ("web_client", "w1"), at=9, source="pixel"),
        sig(("shopify_customer", "9"), ("email", "new@mail.uk"), at=10),
    ]
    kiosk = [
        sig(("web_client", "kiosk"), ("email", f"p{n}@mail.uk"), at=11 + n, source="pixel") for n in range(6)
    ]
    incremental, backfill = both(household + shared_computer + junk + email_change + kiosk)
    assert backfill == incremental
    reasons = sorted(backfill["candidates"].values())
    # The shared computer's one, and the kiosk's two raised before a fourth person blocked it.
    assert reasons == ["shared_device", "shared_device", "shared_device", "shared_phone"]
    assert (
        frozenset(
            {
                ("shopify_customer", "9"),
                ("email", "old@mail.uk"),
                ("email", "new@mail.uk"),
                ("web_client", "w1"),
            }
        )
        in backfill["people"]
    )
    assert {("web_client", "a")} <= set().union(*backfill["people"])
    assert backfill["blocked"] == {"kiosk"}


def test_backfill_normalises_raw_values_and_writes_links_without_merges(db):
    shop = make_shop(f"raw{next(SHOP_NUMBER)}.myshopify.com")
    rows = [
        sig(("email", " Ann@Mail.UK "), ("web_client", "w1"), at=0, source="pixel"),
        sig(
            ("shopify_customer", "gid://shopify/Customer/7"),
            ("email", "ann@mail.uk"),
            ("phone", "07700 900123"),
            at=1,
        ),
    ]
    ids = resolve_history(shop, as_signals(rows))
    assert ids[0] == ids[1] is not None
    assert partition_of(shop.id) == {
        frozenset(
            {
                ("email", "ann@mail.uk"),
                ("web_client", "w1"),
                ("shopify_customer", "7"),
                ("phone", "+447700900123"),
            }
        )
    }
    count = lambda model: db.session.scalar(  # noqa: E731
        sa.select(sa.func.count(model.id)).where(model.shop_id == shop.id)
    )
    assert (count(Profile), count(IdentifierLink), count(Merge)) == (1, 4, 0)


def test_a_signal_naming_nobody_usable_gets_none(db):
    shop = make_shop(f"none{next(SHOP_NUMBER)}.myshopify.com")
    update_settings(shop, {"identity": {"blocked_values": ["front-desk@shop.uk"]}})
    rows = [
        sig(("email", "test@test.com"), at=0),
        sig(("email", "not an email"), ("raw_phone", "12345"), at=1),
        sig(at=2),
        sig(("email", "front-desk@shop.uk"), at=3),
        sig(("email", "real@mail.uk"), at=4),
    ]
    ids = resolve_history(shop, as_signals(rows))
    assert ids[:4] == [None, None, None, None] and ids[4] is not None
    assert partition_of(shop.id) == {frozenset({("email", "real@mail.uk")})}


def test_a_shop_that_already_has_identifiers_goes_through_resolve_many(db):
    shop = make_shop(f"fb{next(SHOP_NUMBER)}.myshopify.com")
    twin = make_shop(f"fbtwin{next(SHOP_NUMBER)}.myshopify.com")
    first = as_signals([sig(("web_client", "w1"), at=0, source="pixel"), sig(("email", "a@mail.uk"), at=1)])
    later = as_signals([sig(("web_client", "w1"), ("email", "a@mail.uk"), at=2, source="pixel")])
    for target in (shop, twin):
        resolve_many(target, first)
    ids = resolve_history(shop, later)
    resolve_many(twin, later)
    # Two existing profiles joined by the new link: only the incremental path merges (a backfill never does).
    merges = db.session.scalar(sa.select(sa.func.count(Merge.id)).where(Merge.shop_id == shop.id))
    assert merges == 1
    assert outcome(shop.id) == outcome(twin.id)
    assert db.session.get(Profile, ids[0]).merged_into_id is None
