"""The traps resolution must not fall into, and the links it must still make."""

import datetime as dt

import sqlalchemy as sa

from app.extensions import db
from app.models import Identifier
from app.services.identifiers import Ident
from app.services.resolution import resolve
from app.services.shop_settings import update_settings
from tests.identity_helpers import T0, feed, idents_of, live_profiles, open_candidates, partition_of


def sig(*pairs, at=0, source="shopify", ref=None):
    idents = [Ident(k, v) for k, v in pairs]
    return (idents, T0 + dt.timedelta(hours=at), source, ref or f"ev{at}")


def test_household_sharing_a_phone_with_two_shopify_accounts_stays_two_profiles_and_one_candidate(shop):
    feed(
        shop.model,
        [
            sig(("shopify_customer", "1"), ("email", "ann@home.uk"), ("phone", "+447700900001"), at=0),
            sig(("shopify_customer", "2"), ("email", "bob@home.uk"), ("phone", "+447700900001"), at=1),
        ],
    )
    assert len(live_profiles(shop.id)) == 2
    (cand,) = open_candidates(shop.id)
    assert cand.reason == "shared_phone"
    assert cand.evidence["identifier"]["value"] == "+447700900001"


def test_shared_computer_where_two_people_submit_emails_does_not_merge_them_silently(shop):
    feed(
        shop.model,
        [
            sig(("web_client", "library-pc"), at=0, source="pixel"),
            sig(("web_client", "library-pc"), ("email", "ann@mail.uk"), at=1, source="pixel"),
            sig(("web_client", "library-pc"), ("email", "bob@mail.uk"), at=2, source="pixel"),
        ],
    )
    people = partition_of(shop.id)
    assert frozenset({("email", "ann@mail.uk"), ("web_client", "library-pc")}) in people
    assert frozenset({("email", "bob@mail.uk")}) in people
    assert [c.reason for c in open_candidates(shop.id)] == ["shared_device"]


def test_test_at_test_dot_com_links_nobody(shop):
    feed(
        shop.model,
        [
            sig(("web_client", "a"), ("email", "test@test.com"), at=0, source="pixel"),
            sig(("web_client", "b"), ("email", "TEST@test.com"), at=1, source="pixel"),
            sig(("web_client", "c"), ("email", "noreply@shop.uk"), at=2, source="pixel"),
            sig(("web_client", "d"), ("phone", "+441234567890"), at=3, source="pixel"),
        ],
    )
    assert len(live_profiles(shop.id)) == 4
    assert all(len(group) == 1 for group in partition_of(shop.id))
    assert resolve(shop.model, [Ident("email", "test@test.com")], source="x", seen_at=T0) is None


def test_shop_blocklist_values_link_nobody(shop):
    update_settings(shop.model, {"identity": {"blocked_values": ["front-desk@shop.uk"]}})
    feed(
        shop.model,
        [
            sig(("web_client", "a"), ("email", "front-desk@shop.uk"), at=0),
            sig(("web_client", "b"), ("email", "front-desk@shop.uk"), at=1),
        ],
    )
    assert len(live_profiles(shop.id)) == 2


def test_customer_who_changes_email_keeps_one_profile_through_the_shopify_customer_id(shop):
    feed(
        shop.model,
        [
            sig(("shopify_customer", "9"), ("email", "old@mail.uk"), at=0),
            sig(("email", "new@mail.uk"), ("web_client", "w1"), at=1, source="pixel"),
            sig(("shopify_customer", "9"), ("email", "new@mail.uk"), at=2),
        ],
    )
    (profile,) = live_profiles(shop.id)
    assert idents_of(profile)["email"] == ["new@mail.uk", "old@mail.uk"]
    assert idents_of(profile)["web_client"] == ["w1"]
    assert open_candidates(shop.id) == []


def test_two_shopify_customer_ids_are_never_merged_automatically(shop):
    feed(shop.model, [sig(("shopify_customer", "1"), ("email", "a@mail.uk"), at=0)])
    feed(shop.model, [sig(("shopify_customer", "2"), ("email", "a@mail.uk"), at=1)])
    assert len(live_profiles(shop.id)) == 2
    assert [c.reason for c in open_candidates(shop.id)] == ["shared_email"]


def test_a_second_marketplace_account_starts_its_own_profile(shop):
    feed(
        shop.model,
        [
            sig(("email", "a@mail.uk"), ("amazon_buyer", "AMZ1"), at=0, source="amazon"),
            sig(("email", "a@mail.uk"), ("amazon_buyer", "AMZ2"), at=1, source="amazon"),
        ],
    )
    assert len(live_profiles(shop.id)) == 2
    assert [c.reason for c in open_candidates(shop.id)] == ["second_amazon_buyer"]


def test_identifier_shared_by_too_many_people_is_blocked_and_links_nobody_more(shop):
    signals = [
        sig(("web_client", "kiosk"), ("email", f"p{n}@mail.uk"), at=n, source="pixel") for n in range(6)
    ]
    feed(shop.model, signals)
    row = db.session.scalar(sa.select(Identifier).where(Identifier.value == "kiosk"))
    assert row.blocked_reason == "shared_by_many"
    assert frozenset({("web_client", "kiosk")}) in partition_of(shop.id)
    assert len(live_profiles(shop.id)) == 7


def test_identifiers_per_kind_are_capped(shop):
    update_settings(shop.model, {"identity": {"max_identifiers_per_kind": 2}})
    signals = [sig(("email", "a@mail.uk"), ("web_client", f"w{n}"), at=n, source="pixel") for n in range(3)]
    feed(shop.model, signals)
    sizes = sorted(len(g) for g in partition_of(shop.id))
    assert sizes == [1, 3]


def test_unparseable_phone_is_kept_but_never_links(shop):
    feed(
        shop.model,
        [
            sig(("email", "a@mail.uk"), ("raw_phone", "12345"), at=0),
            sig(("email", "b@mail.uk"), ("raw_phone", "12345"), at=1),
        ],
    )
    assert len(live_profiles(shop.id)) == 2
    assert resolve(shop.model, [Ident("raw_phone", "12345")], source="x", seen_at=T0) is None


def test_a_signal_with_two_unparseable_phones_keeps_both_and_links_by_its_email(shop):
    # A checkout whose customer and shipping phones are both typed as text ("call 98314", "77425 eves").
    found = resolve(
        shop.model,
        [Ident("raw_phone", "98314"), Ident("raw_phone", "77425"), Ident("email", "a@mail.uk")],
        source="pixel",
        seen_at=T0,
    )
    assert found is not None
    assert idents_of(found) == {"email": ["a@mail.uk"], "raw_phone": ["77425", "98314"]}


def test_a_value_too_long_for_any_identifier_names_nobody():
    from app.services import identifiers

    assert identifiers.normalise("email", "a" * 315 + "@x.co") == Ident("email", "a" * 315 + "@x.co")
    for kind, raw in (
        ("email", "a" * 400 + "@x.co"),
        ("shopify_customer", "9" * 400),
        ("web_client", "c" * 321),
        ("phone", "call me on " + "7" * 400),
    ):
        assert identifiers.normalise(kind, raw, "GB") is None, kind


def test_a_phone_is_parsed_once_however_often_it_comes_back_and_in_any_spelling_the_same(monkeypatch):
    from app.services import identifiers

    parsed = []
    parse = identifiers.phonenumbers.parse
    monkeypatch.setattr(identifiers.phonenumbers, "parse", lambda *a: parsed.append(a) or parse(*a))
    spellings = ("07700 900 417", " 07700 900 417 ", "07700 900 417", "+44 7700 900417")
    found = [identifiers.normalise("phone", raw, "gb") for raw in spellings]
    assert found == [Ident("phone", "+447700900417")] * 4
    assert len(parsed) == 2  # one per distinct spelling once trimmed
    assert identifiers.normalise("phone", "07700 900 417", "US") == Ident("raw_phone", "07700900417")


def test_a_blocklisted_phone_is_blocked_however_the_merchant_typed_it(shop):
    from app.services.resolution import is_blocked

    update_settings(
        shop.model, {"identity": {"blocked_values": ["07700 900999", " +44 7700 900998 ", "Shared@Shop.UK"]}}
    )
    for blocked in ("+447700900999", "+447700900998"):
        assert is_blocked(shop.model, Ident("phone", blocked)), blocked
    assert is_blocked(shop.model, Ident("email", "shared@shop.uk"))
    assert not is_blocked(shop.model, Ident("phone", "+447700900997"))


def test_typed_junk_phones_are_blocked_but_real_ones_are_not(shop):
    from app.services.resolution import is_blocked

    model = shop.model
    for junk in ("+441234567890", "+447777777777", "+449876543210", "0000000000"):
        assert is_blocked(model, Ident("phone", junk)), junk
    assert not is_blocked(model, Ident("phone", "+447700900123"))
    assert not is_blocked(model, Ident("email", "sarah.j.home@gmail.com"))
    assert is_blocked(model, Ident("email", "no-reply@shop.uk"))
    assert is_blocked(model, Ident("email", "test@example.com"))
    assert is_blocked(model, Ident("email", "email@example.net"))
    # Named people at RFC 2606 domains are how provider samples spell customers.
    assert not is_blocked(model, Ident("email", "ana@example.com"))


def test_an_identifier_discovered_out_of_order_moves_with_its_orders(shop):
    from decimal import Decimal

    from app.models import Order

    model = shop.model
    (late,) = feed(model, [sig(("shopify_customer", "1"), ("email", "a@mail.uk"), at=10)])
    db.session.add(
        Order(
            shop_id=shop.id,
            profile_id=late.id,
            source="shopify",
            external_id="o1",
            channel="online",
            placed_at=T0,
            currency="GBP",
            total=Decimal("20"),
            email="A@mail.uk ",
        )
    )
    db.session.flush()
    (early,) = feed(model, [sig(("shopify_customer", "2"), ("email", "a@mail.uk"), at=5)])
    assert idents_of(early)["email"] == ["a@mail.uk"]  # first seen with customer 2
    order = db.session.scalar(sa.select(Order).where(Order.external_id == "o1"))
    assert order.profile_id == early.id
    assert early.order_count == 1 and db.session.get(type(early), late.id).order_count == 0
    assert [c.reason for c in open_candidates(shop.id)] == ["shared_email"]


def test_a_family_phone_seen_again_reads_its_stored_candidates_in_one_query(db, shop):
    """Three Shopify accounts on one phone raise a candidate per pair the phone joins; each
    re-partition of the family raises them again, and what is stored is read at once, not per pair."""
    from tests.helpers import statements

    phone = Ident("phone", "+447700900555")
    accounts = [Ident("shopify_customer", str(n)) for n in (71, 72, 73)]
    family = [([a, phone], T0 + dt.timedelta(minutes=n), "t", f"f{n}") for n, a in enumerate(accounts)]
    feed(shop.model, family)
    raised = sorted((c.profile_a_id, c.profile_b_id) for c in open_candidates(shop.id))
    assert len(raised) >= 2
    with statements() as sent:
        # Seen before its first sighting: the family is re-partitioned and its pairs raised again.
        resolve(shop.model, [accounts[0], phone], source="t", seen_at=T0 - dt.timedelta(days=1))
    assert len([s for s in sent if s.startswith("SELECT") and "FROM merge_candidates" in s]) == 1
    assert sorted((c.profile_a_id, c.profile_b_id) for c in open_candidates(shop.id)) == raised
    assert len(live_profiles(shop.id)) == 3
