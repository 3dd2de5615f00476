"""API of merge candidates, merges and undo; one shop's token never reaches another's."""

import datetime as dt

from app.extensions import db
from app.models import Merge
from app.services.identifiers import Ident
from tests.gate_helpers import make_profile
from tests.helpers import statements
from tests.identity_helpers import T0, feed, households, live_profiles


def household(shop_model, tag=""):
    feed(
        shop_model,
        [
            ([Ident("shopify_customer", "1"), Ident("phone", "+447700900001")], T0, "shopify", f"o1{tag}"),
            (
                [Ident("shopify_customer", "2"), Ident("phone", "+447700900001")],
                T0 + dt.timedelta(hours=1),
                "shopify",
                f"o2{tag}",
            ),
        ],
    )
    db.session.commit()


def test_candidates_are_listed_with_reason_and_evidence(client, shop):
    household(shop.model)
    body = client.get("/api/v1/merge-candidates", headers=shop.auth).get_json()
    (cand,) = body["merge_candidates"]
    assert cand["reason"] == "shared_phone"
    assert cand["evidence"]["identifier"] == {"kind": "phone", "value": "+447700900001"}
    assert len(cand["profile_ids"]) == 2


def test_listing_twelve_candidates_reads_as_much_as_listing_three(client, shop):
    households(shop.model, range(3))
    with statements() as three:
        assert (
            len(client.get("/api/v1/merge-candidates", headers=shop.auth).get_json()["merge_candidates"]) == 3
        )
    households(shop.model, range(3, 12))
    with statements() as twelve:
        body = client.get("/api/v1/merge-candidates", headers=shop.auth).get_json()
    assert len(body["merge_candidates"]) == 12
    assert len(twelve) == len(three)


def test_accepting_a_candidate_merges_and_the_loser_answers_301(client, shop):
    household(shop.model)
    cand = client.get("/api/v1/merge-candidates", headers=shop.auth).get_json()["merge_candidates"][0]
    merge = client.post(f"/api/v1/merge-candidates/{cand['id']}/accept", headers=shop.auth).get_json()[
        "merge"
    ]
    assert merge["undoable"] is True
    gone = client.get(f"/api/v1/profiles/{merge['loser_id']}", headers=shop.auth)
    assert gone.status_code == 301
    assert gone.get_json()["merged_into"] == merge["winner_id"]
    found = client.get("/api/v1/profiles?identifier=phone:+447700900001", headers=shop.auth).get_json()
    assert found["id"] == merge["winner_id"]
    again = client.post(f"/api/v1/merge-candidates/{cand['id']}/accept", headers=shop.auth)
    assert again.status_code == 409
    # A decided candidate names the two profiles it was raised for, not the survivor twice.
    listed = client.get("/api/v1/merge-candidates?status=accepted", headers=shop.auth).get_json()
    assert sorted(listed["merge_candidates"][0]["profile_ids"]) == sorted(cand["profile_ids"])


def test_a_lookup_by_an_unknown_identifier_kind_is_a_400_naming_the_kinds(client, shop):
    household(shop.model)
    answer = client.get("/api/v1/profiles?identifier=phnoe:+447700900001", headers=shop.auth)
    assert answer.status_code == 400
    assert answer.get_json()["error"]["message"].startswith(
        "unknown identifier kind; one of shopify_customer, email"
    )
    assert client.get("/api/v1/profiles?identifier=shopify:1", headers=shop.auth).status_code == 200
    assert (
        client.get("/api/v1/profiles?identifier=email:nobody@mail.uk", headers=shop.auth).status_code == 404
    )


def test_a_shopify_id_of_anything_but_a_customer_finds_nobody(client, shop):
    household(shop.model)
    found = client.get(
        "/api/v1/profiles?identifier=shopify_customer:gid://shopify/Customer/1", headers=shop.auth
    )
    assert found.status_code == 200
    for other in ("gid://shopify/Order/1", "gid://shopify/ProductVariant/1", "orders/1", "x/1"):
        answer = client.get(f"/api/v1/profiles?identifier=shopify_customer:{other}", headers=shop.auth)
        assert answer.status_code == 404, other


def test_an_empty_identifier_is_a_400_not_the_whole_list(client, shop):
    household(shop.model)
    answer = client.get("/api/v1/profiles?identifier=", headers=shop.auth)
    assert answer.status_code == 400
    assert answer.get_json()["error"]["code"] == "bad_identifier"


def test_a_profile_merged_twice_points_at_todays_survivor_in_a_redirect_no_cache_keeps(client, shop):
    oldest, older, newest = (
        make_profile(shop.id, f"{n}@shopper.test", None).id for n in ("oldest", "older", "newest")
    )
    # The older profile survives: newest goes into older, then older into oldest.
    for survivor, loser in ((older, newest), (oldest, older)):
        merged = client.post(
            f"/api/v1/profiles/{survivor}/merge", json={"other_id": loser}, headers=shop.auth
        )
        assert merged.get_json()["merge"]["winner_id"] == survivor
    gone = client.get(f"/api/v1/profiles/{newest}", headers=shop.auth)
    assert gone.status_code == 301 and gone.get_json() == {"id": newest, "merged_into": oldest}
    assert gone.headers["Location"].endswith(f"/api/v1/profiles/{oldest}")
    assert gone.headers["Cache-Control"] == "no-store"  # an undo makes the id answer for itself again


def test_the_candidate_list_goes_page_by_page_newest_first(client, shop, monkeypatch):
    from app.blueprints.api import identity

    monkeypatch.setattr(identity, "PAGE", 2)
    households(shop.model, range(5))
    pages, cursor = [], ""
    while cursor is not None:
        page = client.get(f"/api/v1/merge-candidates?cursor={cursor}", headers=shop.auth).get_json()
        pages.append([c["id"] for c in page["merge_candidates"]])
        cursor = page["next_cursor"]
    ids = [i for page in pages for i in page]
    assert [len(p) for p in pages] == [2, 2, 1] and ids == sorted(ids, reverse=True) and len(set(ids)) == 5


def test_the_merge_list_goes_page_by_page_and_finds_one_profiles_merges(client, shop, monkeypatch):
    from app.blueprints.api import identity

    monkeypatch.setattr(identity, "PAGE", 2)
    keeper = make_profile(shop.id, "keeper@shopper.test", None).id
    others = [make_profile(shop.id, f"o{n}@shopper.test", None).id for n in range(3)]
    bystanders = [make_profile(shop.id, f"b{n}@shopper.test", None).id for n in range(2)]
    for loser in others:
        client.post(f"/api/v1/profiles/{keeper}/merge", json={"other_id": loser}, headers=shop.auth)
    client.post(
        f"/api/v1/profiles/{bystanders[0]}/merge", json={"other_id": bystanders[1]}, headers=shop.auth
    )

    seen, cursor, pages = [], None, 0
    while True:
        page = client.get(
            "/api/v1/merges", query_string={"cursor": cursor or ""}, headers=shop.auth
        ).get_json()
        seen += [m["loser_id"] for m in page["merges"]]
        pages, cursor = pages + 1, page["next_cursor"]
        if cursor is None:
            break
    assert seen == [bystanders[1], *reversed(others)] and pages == 2  # newest first, each once
    mine = client.get(f"/api/v1/merges?profile_id={others[1]}", headers=shop.auth).get_json()["merges"]
    assert [(m["winner_id"], m["loser_id"]) for m in mine] == [(keeper, others[1])]
    answer = client.get("/api/v1/merges?profile_id=-1", headers=shop.auth)
    assert answer.status_code == 422 and "must be a whole number" in answer.get_json()["error"]["message"]
    # A cursor it did not hand out is the 400 GET /profiles answers (it was a 422 here).
    for path in ("merges", "merge-candidates"):
        for bad in ("abc", "99999999999999999999", "-5"):
            answer = client.get(f"/api/v1/{path}?cursor={bad}", headers=shop.auth)
            assert (answer.status_code, answer.get_json()["error"]["code"]) == (400, "bad_cursor"), (
                path,
                bad,
            )


def test_rejecting_a_candidate_closes_it_for_good(client, shop):
    household(shop.model)
    cand = client.get("/api/v1/merge-candidates", headers=shop.auth).get_json()["merge_candidates"][0]
    rejected = client.post(f"/api/v1/merge-candidates/{cand['id']}/reject", headers=shop.auth).get_json()
    assert rejected["merge_candidate"]["status"] == "rejected"
    household(shop.model, tag="again")  # the same signals again raise nothing new
    assert client.get("/api/v1/merge-candidates", headers=shop.auth).get_json()["merge_candidates"] == []
    assert len(live_profiles(shop.id)) == 2


def test_manual_merge_then_undo_through_the_api(client, shop):
    household(shop.model)
    a, b = (p.id for p in live_profiles(shop.id))
    created = client.post(f"/api/v1/profiles/{b}/merge", json={"other_id": a}, headers=shop.auth)
    assert created.status_code == 201
    merge = created.get_json()["merge"]
    assert (merge["winner_id"], merge["loser_id"]) == (a, b)  # older profile wins between equals
    listed = client.get("/api/v1/merges", headers=shop.auth).get_json()["merges"]
    assert [m["id"] for m in listed] == [merge["id"]]
    undone = client.post(f"/api/v1/merges/{merge['id']}/undo", headers=shop.auth).get_json()["merge"]
    assert undone["undone_at"] is not None and undone["undoable"] is False
    assert len(live_profiles(shop.id)) == 2


def test_undo_after_the_window_answers_409_with_the_reason(client, shop):
    household(shop.model)
    a, b = (p.id for p in live_profiles(shop.id))
    merge = client.post(f"/api/v1/profiles/{a}/merge", json={"other_id": b}, headers=shop.auth).get_json()[
        "merge"
    ]
    row = db.session.get(Merge, merge["id"])
    row.undo_deadline = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    row.created_at = row.undo_deadline - dt.timedelta(days=7)  # made a week ago on this plan
    db.session.commit()
    response = client.post(f"/api/v1/merges/{merge['id']}/undo", headers=shop.auth)
    assert response.status_code == 409
    assert response.get_json()["error"]["code"] == "undo_window_closed"
    assert "7 days" in response.get_json()["error"]["message"]


def test_bad_merge_requests_get_clear_errors(client, shop):
    household(shop.model)
    a, _b = (p.id for p in live_profiles(shop.id))
    assert (
        client.post(f"/api/v1/profiles/{a}/merge", json={"other_id": "x"}, headers=shop.auth).status_code
        == 422
    )
    assert (
        client.post(f"/api/v1/profiles/{a}/merge", json={"other_id": a}, headers=shop.auth).status_code == 409
    )
    assert client.post(f"/api/v1/profiles/{a}/merge", data="nope", headers=shop.auth).status_code == 400
    assert client.get("/api/v1/merge-candidates?status=maybe", headers=shop.auth).status_code == 422


def test_a_candidate_a_late_signal_shows_time_order_never_raised_is_listed_as_superseded(client, shop):
    """Four accounts, then their orders giving the family phone; account 1's, the earliest, arrives
    last. The phone was account 1's, and time order doubted 1 and 2, 1 and 3 before four people
    blocked it: the pairs with account 2 close as superseded (kept for the record), 1's open."""
    phone = Ident("phone", "+447700900001")
    accounts = [([Ident("shopify_customer", str(n))], T0, "shopify", f"c{n}") for n in (1, 2, 3, 4)]
    orders = [
        ([Ident("shopify_customer", str(n)), phone], T0 + dt.timedelta(hours=n), "shopify", f"o{n}")
        for n in (2, 3, 4, 1)
    ]
    feed(shop.model, accounts + orders)
    db.session.commit()
    body = client.get("/api/v1/merge-candidates?status=superseded", headers=shop.auth).get_json()
    closed = body["merge_candidates"]
    assert {(c["status"], c["decided_by"]) for c in closed} == {("superseded", "resolution")}
    assert sorted(sorted(link["event"] for link in c["evidence"]["links"]) for c in closed) == [
        ["o2", "o3"],
        ["o2", "o4"],
    ]
    opened = client.get("/api/v1/merge-candidates", headers=shop.auth).get_json()["merge_candidates"]
    assert sorted(sorted(link["event"] for link in c["evidence"]["links"]) for c in opened) == [
        ["o1", "o2"],
        ["o1", "o3"],
    ]


def test_another_shops_token_cannot_see_accept_merge_or_undo(client, shop, other_shop):
    household(shop.model)
    cand = client.get("/api/v1/merge-candidates", headers=shop.auth).get_json()["merge_candidates"][0]
    a, b = cand["profile_ids"]
    assert (
        client.get("/api/v1/merge-candidates", headers=other_shop.auth).get_json()["merge_candidates"] == []
    )
    assert (
        client.post(f"/api/v1/merge-candidates/{cand['id']}/accept", headers=other_shop.auth).status_code
        == 404
    )
    assert (
        client.post(f"/api/v1/merge-candidates/{cand['id']}/reject", headers=other_shop.auth).status_code
        == 404
    )
    assert (
        client.post(f"/api/v1/profiles/{a}/merge", json={"other_id": b}, headers=other_shop.auth).status_code
        == 404
    )
    merge = client.post(f"/api/v1/profiles/{a}/merge", json={"other_id": b}, headers=shop.auth).get_json()[
        "merge"
    ]
    assert client.get("/api/v1/merges", headers=other_shop.auth).get_json()["merges"] == []
    assert client.post(f"/api/v1/merges/{merge['id']}/undo", headers=other_shop.auth).status_code == 404


def test_a_merge_refused_for_a_merged_away_profile_names_todays_survivor(client, shop):
    """308 went into 307 and 307 into 304: the refusal names 304, where the profile lives now."""
    oldest, older, newest, other = (
        make_profile(shop.id, f"{n}@shopper.test", None).id for n in ("oldest", "older", "newest", "other")
    )
    for survivor, loser in ((older, newest), (oldest, older)):
        client.post(f"/api/v1/profiles/{survivor}/merge", json={"other_id": loser}, headers=shop.auth)
    refused = client.post(f"/api/v1/profiles/{newest}/merge", json={"other_id": other}, headers=shop.auth)
    assert refused.status_code == 409
    assert refused.get_json()["error"]["message"] == (
        f"profile {newest} was already merged into profile {oldest}"
    )


def test_an_unparseable_phone_finds_nobody_though_a_profile_keeps_it_as_text(client, shop):
    """'+44 12' is kept on the profile as a raw phone, which never finds or links anyone."""
    feed(shop.model, [([Ident("email", "m4@x.io"), Ident("raw_phone", "4412")], T0, "api", "e1")])
    db.session.commit()
    assert client.get("/api/v1/profiles?identifier=email:m4@x.io", headers=shop.auth).status_code == 200
    for spelling in ("%2B44%2012", "4412", "%2B4412"):
        answer = client.get(f"/api/v1/profiles?identifier=phone:{spelling}", headers=shop.auth)
        assert answer.status_code == 404, spelling
