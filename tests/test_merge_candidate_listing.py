"""Open candidates are listed by the people they name now, after any merges since they were raised."""

from __future__ import annotations

from app.extensions import db
from app.models import MergeCandidate, Profile
from app.services import merge_candidates, merges
from app.services.identifiers import live_profile
from tests.gate_helpers import make_profile
from tests.identity_helpers import households


def _candidate(shop_id: int, a: Profile, b: Profile) -> MergeCandidate:
    cand = MergeCandidate(shop_id=shop_id, profile_a_id=a.id, profile_b_id=b.id, reason="shared_device")
    db.session.add(cand)
    db.session.flush()
    return cand


def test_two_candidates_that_now_name_the_same_two_people_are_listed_once(db, shop):
    ann, ann_too, bob = (make_profile(shop.id, f"{n}@shopper.test", None) for n in ("ann", "ann2", "bob"))
    with_ann = _candidate(shop.id, ann, bob)
    with_ann_too = _candidate(shop.id, ann_too, bob)
    db.session.commit()
    assert {c.id for c in merge_candidates.list_candidates(shop.model)} == {with_ann.id, with_ann_too.id}
    merges.merge_profiles(shop.model, ann.id, ann_too.id, reason="manual", actor="test")
    db.session.commit()
    listed = merge_candidates.list_candidates(shop.model)
    assert len(listed) == 1
    survivor = live_profile(db.session.get(Profile, ann.id))
    assert {p.id for p in merge_candidates.live_sides(listed[0])} == {survivor.id, bob.id}


def test_a_candidate_whose_two_profiles_became_one_is_not_listed(db, shop):
    ann, ann_too, bob = (make_profile(shop.id, f"{n}@shopper.test", None) for n in ("ann", "ann2", "bob"))
    _candidate(shop.id, ann, bob)
    _candidate(shop.id, ann_too, bob)
    db.session.commit()
    merges.merge_profiles(shop.model, ann.id, ann_too.id, reason="manual", actor="test")
    survivor = merge_candidates.live_sides(merge_candidates.list_candidates(shop.model)[0])
    merges.merge_profiles(shop.model, *[p.id for p in survivor], reason="manual", actor="test")
    db.session.commit()
    assert merge_candidates.list_candidates(shop.model) == []
    assert len(merge_candidates.list_candidates(shop.model, "all")) == 2  # history keeps both


def test_a_merge_settles_candidates_raised_against_profiles_merged_into_either_side_before(db, shop):
    ann, ann_too, bob = (make_profile(shop.id, f"{n}@shopper.test", None) for n in ("ann", "ann2", "bob"))
    stale = _candidate(shop.id, ann_too, bob)  # raised before ann_too became part of ann
    db.session.commit()
    first = merges.merge(shop.model, ann, ann_too, reason="manual", actor="test")
    assert db.session.get(MergeCandidate, stale.id).status == "open"  # still names ann and bob
    second = merges.merge_profiles(shop.model, ann.id, bob.id, reason="manual", actor="test")
    db.session.commit()
    assert db.session.get(MergeCandidate, stale.id).status == "merged"
    merges.undo(shop.model, second.id, actor="test")
    db.session.commit()
    # As for any candidate a merge settled: its undo says "not the same person".
    assert db.session.get(MergeCandidate, stale.id).status == "rejected"
    assert first.undone_at is None


def test_live_profiles_follows_every_merge_chain_and_leaves_out_what_this_shop_does_not_hold(
    db, shop, other_shop
):
    from app.services.identifiers import live_profiles

    ann, ann2, ann3, bob = (make_profile(shop.id, f"{n}@shopper.test", None) for n in ("a", "a2", "a3", "b"))
    stranger = make_profile(other_shop.id, "s@shopper.test", None)
    merges.merge(shop.model, ann2, ann3, reason="manual", actor="test")
    merges.merge(shop.model, ann, ann2, reason="manual", actor="test")  # ann3 -> ann2 -> ann
    db.session.commit()
    found = live_profiles(shop.id, [ann3.id, ann2.id, bob.id, stranger.id, 999_999])
    assert {k: p.id for k, p in found.items()} == {ann3.id: ann.id, ann2.id: ann.id, bob.id: bob.id}


def test_a_pair_two_merges_made_one_is_listed_once_across_pages(shop):
    """X–Y and Z–W were two households; merging X with Z and Y with W makes both candidates name
    the same two people. The first page showed the newer, and the next page the older again."""
    households(shop.model, [1])  # candidate X–Y (the oldest)
    households(shop.model, range(2, 5))  # three more, newer
    households(shop.model, [5])  # candidate Z–W (the newest)
    oldest, *_, newest = merge_candidates.list_candidates(shop.model)[::-1]
    for keep, lose in zip(
        (oldest.profile_a_id, oldest.profile_b_id), (newest.profile_a_id, newest.profile_b_id), strict=True
    ):
        merges.merge_profiles(shop.model, keep, lose, reason="manual", actor="owner")
    db.session.commit()
    seen, before = [], None
    while True:
        page = merge_candidates.list_candidates(shop.model, limit=2, before=before)
        if not page:
            break
        seen += [frozenset(p.id for p in merge_candidates.live_sides(c)) for c in page]
        before = page[-1].id
    assert len(seen) == len(set(seen)) == 4


def test_the_reviews_total_counts_each_pair_of_people_once_reading_ids_in_chunks(db, shop, monkeypatch):
    """The total is what the pages list, however the ids are split up: a shop with tens of thousands
    of open pairs overflowed one statement's 65,535 parameters, read as whole profiles."""
    from app.services import identifiers

    monkeypatch.setattr(identifiers, "ID_CHUNK", 2)
    people = [make_profile(shop.id, f"p{n}@shopper.test", None) for n in range(6)]
    for a, b in ((0, 1), (2, 3), (4, 5), (1, 2)):
        _candidate(shop.id, people[a], people[b])
    _candidate(shop.id, people[1], people[0])  # the same two people again
    db.session.commit()
    merges.merge_profiles(shop.model, people[2].id, people[3].id, reason="manual", actor="test")  # one now
    merges.merge_profiles(shop.model, people[4].id, people[0].id, reason="manual", actor="test")  # (4,5) on 0
    db.session.commit()
    listed = merge_candidates.list_candidates(shop.model)
    assert merge_candidates.open_pair_count(shop.model) == len(listed) == 3
