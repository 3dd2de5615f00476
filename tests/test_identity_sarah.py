"""The Sarah story ends as one profile after accepting exactly one candidate."""

import json

from app.services import merge_candidates
from tests.identity_helpers import (
    feed,
    idents_of,
    live_profiles,
    open_candidates,
    partition_of,
    sarah_signals,
)


def test_sarah_story_becomes_one_profile_after_accepting_the_one_shared_cookie_candidate(shop, fixtures_dir):
    model = shop.model
    feed(model, sarah_signals(fixtures_dir))
    candidates = open_candidates(shop.id)
    assert len(live_profiles(shop.id)) == 2
    assert len(candidates) == 1
    assert candidates[0].reason == "shared_device"
    assert candidates[0].evidence["identifier"] == {"kind": "web_client", "value": "c-phone-sarah"}

    merge_candidates.accept(model, candidates[0].id, actor="owner@alpha")
    (sarah,) = live_profiles(shop.id)
    expected = json.loads((fixtures_dir / "sarah" / "expected.json").read_text())["profile"]
    held = idents_of(sarah)
    assert held["email"] == expected["emails"]
    assert held["phone"] == expected["phones"]
    assert held["web_client"] == expected["web_clients"]
    assert held["shopify_customer"] == [expected["shopify_customer"]]
    assert open_candidates(shop.id) == []


def test_sarah_story_resolves_the_logged_in_page_view_to_the_shopify_customer(shop, fixtures_dir):
    profiles = feed(shop.model, sarah_signals(fixtures_dir))
    assert profiles[7].id == profiles[4].id == profiles[8].id
    assert profiles[1].id == profiles[0].id != profiles[4].id


def test_sarah_story_in_any_arrival_order_gives_the_same_people(shop, other_shop, fixtures_dir):
    signals = sarah_signals(fixtures_dir)
    feed(shop.model, signals)
    reordered = signals[7:] + signals[3:7] + signals[:3]  # the login first, the popup last
    feed(other_shop.model, reordered)
    assert partition_of(shop.id) == partition_of(other_shop.id)
    assert len(open_candidates(other_shop.id)) == 1
