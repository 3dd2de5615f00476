"""The open merge candidates do not depend on the order signals arrive in: a late webhook, or a
signal of the same instant delivered second, leaves the pairs resolving in time order leaves."""

import datetime as dt
import os

from hypothesis import given
from hypothesis import strategies as st

from app.extensions import db
from app.models import Identifier, Profile
from app.services import merge_candidates
from app.services.identifiers import Ident, live_profile
from tests.identity_helpers import feed
from tests.test_identity_properties import SHOP_NUMBER, SLOW, make_shop

DAY1 = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
DAY2 = dt.datetime(2026, 11, 2, tzinfo=dt.UTC)
PHONE = ("phone", "+447700900700")


def open_pairs(shop) -> set:
    """Each open candidate a reviewer sees as its reason and its two people, by their identifiers."""
    cands = merge_candidates.list_candidates(shop, "open", limit=10_000)

    def person(profile_id: int) -> frozenset:
        live = live_profile(db.session.get(Profile, profile_id))
        rows = db.session.query(Identifier.kind, Identifier.value).filter_by(profile_id=live.id)
        return frozenset(map(tuple, rows))

    return {
        (cand.reason, frozenset({person(cand.profile_a_id), person(cand.profile_b_id)})) for cand in cands
    }


def resolve_in_order(signals, order, tag: str):
    """Resolve ``signals`` (``(identifiers, at)``) in ``order`` in a fresh GB shop; its open pairs."""
    shop = make_shop(f"{tag}{next(SHOP_NUMBER)}.myshopify.com")
    feed(
        shop,
        [([Ident(k, v) for k, v in signals[n][0]], signals[n][1], "api", f"s{n}") for n in order],
    )
    return open_pairs(shop)


def by_email(pairs: set) -> set:
    """Open pairs named by each side's email (the repro's people have one each)."""
    return {
        (reason, frozenset(next(v for k, v in side if k == "email") for side in sides))
        for reason, sides in pairs
    }


REPRO = [
    ([("shopify_customer", "1"), ("email", "a@gmail.com")], DAY1 + dt.timedelta(hours=10)),
    ([("shopify_customer", "2"), ("email", "b@gmail.com")], DAY1 + dt.timedelta(hours=11)),
    ([("shopify_customer", "3"), ("email", "c@gmail.com")], DAY1 + dt.timedelta(hours=12)),
    ([("email", "d@gmail.com")], DAY1 + dt.timedelta(hours=13)),
    ([("email", "a@gmail.com"), PHONE], DAY2 + dt.timedelta(hours=10)),
    ([("email", "b@gmail.com"), PHONE], DAY2 + dt.timedelta(hours=11)),
    ([("email", "c@gmail.com"), PHONE], DAY2 + dt.timedelta(hours=12)),
    ([("email", "d@gmail.com"), PHONE], DAY2 + dt.timedelta(hours=12)),
]


def test_a_household_phones_late_first_sighting_leaves_the_candidates_of_time_order(db):
    """a's sighting with the phone arrives last (a late webhook), or the four arrive newest first:
    the reviewer sees the pairs time order raised (a with b, a with c), not pairs with b."""
    in_time = resolve_in_order(REPRO, range(8), "o")
    assert by_email(in_time) == {
        ("shared_phone", frozenset({"a@gmail.com", "b@gmail.com"})),
        ("shared_phone", frozenset({"a@gmail.com", "c@gmail.com"})),
    }
    assert resolve_in_order(REPRO, [0, 1, 2, 3, 5, 6, 7, 4], "o") == in_time
    assert resolve_in_order(REPRO, [0, 1, 2, 3, 7, 6, 5, 4], "o") == in_time


def test_signals_of_one_instant_raise_the_same_candidates_in_either_order(db):
    """c's and d's sightings with the phone happened at the same instant: whichever is delivered
    first, the pairs are those of taking them in the order of their identifiers (c, then d)."""
    assert resolve_in_order(REPRO, [0, 1, 2, 3, 4, 5, 7, 6], "i") == resolve_in_order(REPRO, range(8), "i")


PEOPLE = 4
hour = st.integers(min_value=0, max_value=5)
someone = st.tuples(hour, st.one_of(st.none(), hour), st.one_of(st.none(), hour), st.booleans())


def story(people) -> list:
    """A household: each person's order (Shopify customer and email), maybe their sighting with
    the family phone, maybe with the family laptop's cookie (logged in, or typing their email)."""
    signals = []
    for n, (order, phone, laptop, logged_in) in enumerate(people, start=1):
        customer, email = ("shopify_customer", str(n)), ("email", f"p{n}@mail.uk")
        signals.append(([customer, email], DAY1 + dt.timedelta(hours=order)))
        if phone is not None:
            signals.append(([email, PHONE], DAY2 + dt.timedelta(hours=phone)))
        if laptop is not None:
            at = DAY2 + dt.timedelta(hours=laptop, minutes=30)
            signals.append(([("web_client", "laptop"), customer if logged_in else email], at))
    return signals


@SLOW
@given(
    people=st.lists(someone, min_size=2, max_size=int(os.environ.get("C360_HYPOTHESIS_PEOPLE", PEOPLE))),
    data=st.data(),
)
def test_any_arrival_order_of_a_household_leaves_the_open_candidates_of_time_order(db, people, data):
    """A shared phone and a shared laptop, their sightings delivered in any order (late webhooks,
    ties at one instant): the open candidates, as reasons and pairs of people, are time order's."""
    signals = story(people)
    in_time = sorted(range(len(signals)), key=lambda n: signals[n][1])
    shuffled = data.draw(st.permutations(range(len(signals))))
    assert resolve_in_order(signals, shuffled, "h") == resolve_in_order(signals, in_time, "h")
