"""The Duplicates screen: pairs side by side, previews before merge and undo, HTMX fragments."""

import datetime as dt
import re
import zoneinfo

from app.extensions import db
from app.models import Merge, MergeCandidate
from app.services import merge_candidates, merges
from tests.enrichment_helpers import add_event, add_order
from tests.gate_helpers import make_profile
from tests.helpers import make_shop, statements
from tests.identity_helpers import T0, households
from tests.test_identity_api import household

HX = {"HX-Request": "true"}


def test_duplicates_page_shows_both_profiles_and_the_evidence(client, auth, shop):
    household(shop.model)
    auth.login_as(shop)
    page = client.get("/duplicates/")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "<html" in html and "Same phone number on both" in html
    assert "+447700900001" in html and "shopify customer: 1" in html and "shopify customer: 2" in html
    # Each link names the signal that made it and where it came from ("pixel event: s2 (pixel)").
    assert "o1 (shopify)" in html and "o2 (shopify)" in html
    fragment = client.get("/duplicates/", headers=HX).get_data(as_text=True)
    assert "<html" not in fragment and 'id="review"' in fragment


def test_merge_goes_through_a_preview_then_a_post_and_offers_undo(client, auth, shop):
    household(shop.model)
    auth.login_as(shop)
    cand = db.session.query(MergeCandidate).one()
    preview = client.get(f"/duplicates/candidates/{cand.id}/merge", headers=HX).get_data(as_text=True)
    assert "stays" in preview and "1 identifier." in preview and "<html" not in preview
    # The Pro plan's window, in days and as the date it ends, not the plan's name.
    assert "You can undo this for 7 days, until " in preview
    assert db.session.query(Merge).count() == 0
    done = client.post(f"/duplicates/candidates/{cand.id}/merge", headers=HX).get_data(as_text=True)
    assert "Merged." in done and "Undo…" in done and "No possible duplicates" in done
    merge = db.session.query(Merge).one()
    undo_preview = client.get(f"/duplicates/merges/{merge.id}/undo", headers=HX).get_data(as_text=True)
    assert "Undo merge" in undo_preview
    undone = client.post(f"/duplicates/merges/{merge.id}/undo", headers=HX).get_data(as_text=True)
    assert "Merge undone." in undone and "undone" in undone
    again = client.get(f"/duplicates/merges/{merge.id}/undo", headers=HX).get_data(as_text=True)
    assert f"Merge {merge.id} was already undone on " in again and "Undo merge</button>" not in again


def test_an_undo_preview_past_the_window_says_when_it_ended(client, auth, db):
    free = make_shop("free.myshopify.com", plan="free", timezone="America/New_York")
    household(free.model)
    auth.login_as(free)
    cand = db.session.query(MergeCandidate).one()
    preview = client.get(f"/duplicates/candidates/{cand.id}/merge", headers=HX).get_data(as_text=True)
    assert "You can undo this for 24 hours, until " in preview
    client.post(f"/duplicates/candidates/{cand.id}/merge", headers=HX)
    merge = db.session.query(Merge).one()
    merge.undo_deadline = dt.datetime(2026, 1, 2, 3, 4, tzinfo=dt.UTC)
    merge.created_at = merge.undo_deadline - dt.timedelta(hours=24)
    free.model.plan = "enterprise"  # an upgrade since does not lengthen a window that closed
    db.session.commit()
    late = client.get(f"/duplicates/merges/{merge.id}/undo", headers=HX).get_data(as_text=True)
    # The merge's own window, in the shop's zone as the rest of the screen.
    assert "its undo window of 24 hours ended on 01 Jan 2026 22:04 EST" in late
    assert "Undo merge</button>" not in late


def test_not_the_same_person_closes_the_pair(client, auth, shop):
    household(shop.model)
    auth.login_as(shop)
    cand = db.session.query(MergeCandidate).one()
    html = client.post(f"/duplicates/candidates/{cand.id}/reject", headers=HX).get_data(as_text=True)
    assert "Kept apart." in html and "No possible duplicates" in html
    db.session.expire_all()
    assert db.session.get(MergeCandidate, cand.id).status == "rejected"


def test_decisions_need_the_csrf_token(client, auth, shop):
    household(shop.model)
    auth.login_as(shop)
    cand = db.session.query(MergeCandidate).one()
    assert client.post(f"/duplicates/candidates/{cand.id}/merge", csrf=False).status_code == 400
    assert db.session.query(Merge).count() == 0


def test_another_shops_candidate_answers_404(client, auth, shop):
    other = make_shop("bravo.myshopify.com")
    household(other.model)
    cand = db.session.query(MergeCandidate).one()
    auth.login_as(shop)
    assert client.get(f"/duplicates/candidates/{cand.id}/merge").status_code == 404
    assert client.post(f"/duplicates/candidates/{cand.id}/merge").status_code == 404
    assert db.session.query(Merge).count() == 0


def test_duplicates_needs_login(client):
    assert client.get("/duplicates/").status_code == 302


def merged_pairs(shop, numbers):
    """Two profiles merged per number: a row each in Recent merges."""
    for n in numbers:
        a, b = (make_profile(shop.id, f"{who}{n}@shopper.test", None) for who in ("a", "b"))
        merges.merge(shop.model, a, b, reason="manual", actor="test")
    db.session.commit()


def test_the_duplicates_page_reads_as_much_for_twelve_pairs_and_merges_as_for_three(client, auth, shop):
    auth.login_as(shop)
    households(shop.model, range(3))
    merged_pairs(shop, range(3))
    with statements() as three:
        assert client.get("/duplicates/", headers=HX).status_code == 200
    households(shop.model, range(3, 12))
    merged_pairs(shop, range(3, 12))
    with statements() as twelve:
        page = client.get("/duplicates/", headers=HX).get_data(as_text=True)
    assert page.count("Same phone number on both") == 12
    assert page.count("Undo…</a>") == 12
    assert len(twelve) == len(three)


def test_each_side_shows_its_live_profile_with_its_latest_ten_orders_newest_first(db, shop):
    ann, bob = (make_profile(shop.id, f"{n}@shopper.test", None) for n in ("ann", "bob"))
    ann_too = make_profile(shop.id, "ann2@shopper.test", None)
    placed = {ann.id: [], bob.id: []}
    for n in range(12):
        for who in (ann, bob):
            placed[who.id].append(add_order(who, T0 + dt.timedelta(days=n)).id)
    merges.merge(shop.model, ann, ann_too, reason="manual", actor="test")
    db.session.commit()
    side_of = merge_candidates.sides(shop.model, [ann_too.id, bob.id, 999_999])
    assert set(side_of) == {ann_too.id, bob.id}  # no such profile: left out
    assert side_of[ann_too.id].profile.id == ann.id  # merged away: shown by its survivor
    for asked, who in ((ann_too.id, ann), (bob.id, bob)):
        assert [o.id for o in side_of[asked].orders] == placed[who.id][:1:-1]
    assert [i.value for i in side_of[ann_too.id].identifiers] == ["ann2@shopper.test", "ann@shopper.test"]


def test_a_sides_last_activity_is_the_customers_own_and_not_a_stage_change_we_recorded(db, shop):
    from app.services.lifecycle import EVENT_SOURCE, EVENT_TYPE

    ann = make_profile(shop.id, "ann@shopper.test", None)
    ann.last_seen_at = None
    viewed = T0 + dt.timedelta(days=3)
    add_event(ann, "web.page_viewed", viewed, "web", source="pixel")
    add_event(ann, EVENT_TYPE, T0 + dt.timedelta(days=40), source=EVENT_SOURCE)
    db.session.commit()
    assert merge_candidates.sides(shop.model, [ann.id])[ann.id].last_activity_at == viewed


def test_recent_merges_name_the_later_merge_to_undo_first(client, auth, shop):
    kept, first, second = (make_profile(shop.id, f"{who}@shopper.test", None) for who in ("k", "f", "s"))
    m1 = merges.merge(shop.model, kept, first, reason="manual", actor="test")
    m2 = merges.merge(shop.model, kept, second, reason="manual", actor="test")
    db.session.commit()
    auth.login_as(shop)
    page = client.get("/duplicates/", headers=HX).get_data(as_text=True)
    assert page.count("Undo…</a>") == 1 and f"undo #{m2.id} first" in page
    refused = client.get(f"/duplicates/merges/{m1.id}/undo", headers=HX).get_data(as_text=True)
    assert f"undo merge {m2.id} first" in refused and "Undo merge</button>" not in refused


def test_duplicates_times_are_shown_in_the_shops_zone_and_say_so(client, auth, db):
    shop = make_shop("zoned.myshopify.com", timezone="Australia/Sydney")
    kept, gone = (make_profile(shop.id, f"{who}@shopper.test", None) for who in ("k", "g"))
    row = merges.merge(shop.model, kept, gone, reason="manual", actor="test")
    db.session.commit()
    auth.login_as(shop)
    page = client.get("/duplicates/", headers=HX).get_data(as_text=True)
    sydney = row.created_at.astimezone(zoneinfo.ZoneInfo("Australia/Sydney"))
    assert f"{sydney:%d %b %Y %H:%M} {sydney.tzname()}" in page


def test_a_decided_candidates_preview_says_so_and_offers_no_merge(client, auth, shop):
    household(shop.model)
    auth.login_as(shop)
    cand = db.session.query(MergeCandidate).one()
    client.post(f"/duplicates/candidates/{cand.id}/merge", headers=HX)  # another tab merged it
    stale = client.get(f"/duplicates/candidates/{cand.id}/merge", headers=HX)
    html = stale.get_data(as_text=True)
    assert stale.status_code == 409
    assert f"Merge candidate {cand.id} is already accepted." in html
    # The reason fits the preview box, and the list behind it is refreshed out of band.
    assert 'id="review"' in html and 'hx-swap-oob="true"' in html and html.count('id="review"') == 1
    assert "Merge</button>" not in html and "is merged into it" not in html


def test_a_missing_merges_undo_preview_answers_in_the_preview_box(client, auth, shop):
    auth.login_as(shop)
    missing = client.get("/duplicates/merges/987654/undo", headers=HX)
    html = missing.get_data(as_text=True)
    assert missing.status_code == 404 and "Merge 987654 not found." in html
    assert html.count('id="review"') == 1 and 'hx-swap-oob="true"' in html


def _htmx_rule(config: dict, status: int) -> dict:
    """The response-handling rule htmx applies to ``status``: the first whose code matches."""
    import re

    return next((r for r in config["responseHandling"] if re.search(r["code"], str(status))), {"swap": False})


def test_refusals_are_shown_by_htmx_and_other_errors_raise_a_banner(client, auth, shop):
    """htmx swaps no 4xx by default: a 409 "already decided" or a 422 bad filter vanished unseen."""
    import json
    import re

    auth.login_as(shop)
    html = client.get("/duplicates/").get_data(as_text=True)
    meta = re.search(r"<meta name=\"htmx-config\" content='([^']+)'>", html)
    config = json.loads(meta.group(1))
    for status in (409, 422):  # a fragment with the reason, made for the request's target
        assert _htmx_rule(config, status)["swap"] is True, status
    # Not always a fragment for the target (a plain "Not Found" page would replace a list): the
    # banner script shows the answer's first paragraph, which a fragment starts with its reason.
    for status in (400, 403, 404, 413, 429, 500, 503):
        assert _htmx_rule(config, status) == {"code": "[45]..", "swap": False, "error": True}, status
    assert _htmx_rule(config, 200)["swap"] is True and _htmx_rule(config, 204)["swap"] is False
    script = re.search(r'<script src="([^"]*htmx-errors\.js)"', html).group(1)
    body = client.get(script).get_data(as_text=True)
    assert "htmx:responseError" in body and "htmx:sendError" in body


def test_every_pair_and_merge_is_reachable_a_page_at_a_time(client, auth, shop, monkeypatch):
    """The review showed the newest 50 pairs and 20 merges, and nothing said there were more."""
    from app.services import duplicates_review

    monkeypatch.setattr(duplicates_review, "PAIRS_PAGE", 2)
    monkeypatch.setattr(duplicates_review, "RECENT_MERGES", 2)
    households(shop.model, range(5))
    merged_pairs(shop, range(3))
    auth.login_as(shop)
    seen, url = [], "/duplicates/"
    while url:
        html = client.get(url, headers=HX).get_data(as_text=True)
        seen += re.findall(r'id="candidate-(\d+)"', html)
        older = re.search(r'href="([^"]*)"[^>]*>Older pairs</a>', html)
        url = older.group(1).replace("&amp;", "&") if older else None
    assert len(seen) == len(set(seen)) == db.session.query(MergeCandidate).count() == 5
    first = client.get("/duplicates/", headers=HX).get_data(as_text=True)
    assert "Possible duplicates (5)" in first  # the total, not the page's "2+"
    older = re.search(r'href="([^"]*)"[^>]*>Older merges</a>', first).group(1).replace("&amp;", "&")
    last = client.get(older, headers=HX).get_data(as_text=True)
    assert last.count("Undo…</a>") == 1 and "Latest merges" in last
    # Paging the pairs keeps the merges' page (its links carried no merges_before).
    pairs_link = re.search(r'href="([^"]*)"[^>]*>Older pairs</a>', last).group(1)
    assert "merges_before=" in pairs_link
    assert client.get("/duplicates/?before=99999999999999999999999").status_code == 200


def test_a_decision_on_an_older_page_of_pairs_answers_with_that_page(client, auth, shop, monkeypatch):
    """Deciding the first pair of "Older pairs" answered with the newest page: the reviewer lost
    their place after every decision."""
    from app.services import duplicates_review

    monkeypatch.setattr(duplicates_review, "PAIRS_PAGE", 2)
    households(shop.model, range(5))
    auth.login_as(shop)
    first = client.get("/duplicates/", headers=HX).get_data(as_text=True)
    older = re.search(r'href="([^"]*)"[^>]*>Older pairs</a>', first).group(1).replace("&amp;", "&")
    page = client.get(older, headers=HX).get_data(as_text=True)
    shown = re.findall(r'id="candidate-(\d+)"', page)
    reject = re.search(r'hx-post="([^"]*/reject[^"]*)"', page).group(1).replace("&amp;", "&")
    assert "before=" in reject
    answer = client.post(reject, headers=HX).get_data(as_text=True)
    assert "Kept apart." in answer and "older pairs" in answer and "Possible duplicates (4)" in answer
    left = re.findall(r'id="candidate-(\d+)"', answer)
    assert shown[0] not in left and shown[1] in left
    assert not set(left) & set(re.findall(r'id="candidate-(\d+)"', first))  # not the newest page
    preview = client.get(re.search(r'hx-get="([^"]*/merge\?[^"]*)"', answer).group(1).replace("&amp;", "&"))
    merge = re.search(r'hx-post="([^"]*/merge[^"]*)"', preview.get_data(as_text=True)).group(1)
    assert "before=" in merge
    plain = client.post(merge.replace("&amp;", "&"))  # no JavaScript: back to the same page
    assert plain.status_code == 303 and "before=" in plain.headers["Location"]


def test_a_support_agent_reads_the_duplicates_without_a_button_that_would_answer_403(client, auth, db):
    """The README: support agents read everything; each screen offers only the actions a role may take."""
    support = make_shop("helpdesk.myshopify.com", role="support")
    household(support.model)
    merged_pairs(support, [1])
    cand = db.session.query(MergeCandidate).one()
    merge = db.session.query(Merge).one()
    auth.login(support.owner_email)
    page = client.get("/duplicates/")
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and "Same phone number on both" in html and ">Duplicates</a>" in html
    assert "Merge…" not in html and "Not the same person" not in html and "Undo…" not in html
    assert client.post(f"/duplicates/candidates/{cand.id}/merge").status_code == 403
    assert client.post(f"/duplicates/merges/{merge.id}/undo").status_code == 403
    assert client.get(f"/duplicates/candidates/{cand.id}/merge").status_code == 403


def test_the_review_reads_as_sentences_not_internal_keys(client, auth, shop):
    household(shop.model)
    merged_pairs(shop, [1])
    cand = db.session.query(MergeCandidate).one()
    auth.login_as(shop)
    html = client.get("/duplicates/", headers=HX).get_data(as_text=True)
    assert "shopify customer 1 with phone +447700900001" in html  # not "shopify_customer:1"
    assert "1 order ·" in html or "0 orders ·" in html
    assert "1 orders" not in html
    assert re.search(r"\d\d [A-Z][a-z]{2} \d{4} \d\d:\d\d (GMT|BST)", html)  # link times in the shop's zone
    client.post(f"/duplicates/candidates/{cand.id}/merge", headers=HX)
    html = client.get("/duplicates/", headers=HX).get_data(as_text=True)
    assert "Accepted candidate: Same phone number on both" in html and "candidate: shared_phone" not in html
    assert "Merged by hand" in html
    loser = db.session.query(Merge).filter_by(reason="manual").one().loser_id
    assert f'href="/customers/{loser}"' in html


def test_without_javascript_merge_and_undo_are_links_and_posts_that_redirect(client, auth, shop):
    """A reload after a plain form post re-posted it (and got a 409); the Merge… and Undo…
    buttons did nothing without htmx."""
    household(shop.model)
    auth.login_as(shop)
    cand = db.session.query(MergeCandidate).one()
    page = client.get("/duplicates/").get_data(as_text=True)
    assert f'href="/duplicates/candidates/{cand.id}/merge"' in page
    preview = client.get(f"/duplicates/candidates/{cand.id}/merge").get_data(as_text=True)
    assert "<html" in preview and f'action="/duplicates/candidates/{cand.id}/merge"' in preview
    done = client.post(f"/duplicates/candidates/{cand.id}/merge")
    assert done.status_code == 303 and done.headers["Location"] == "/duplicates/"
    after = client.get("/duplicates/").get_data(as_text=True)
    merge = db.session.query(Merge).one()
    assert "Merged." in after and f'href="/duplicates/merges/{merge.id}/undo"' in after
    again = client.post(f"/duplicates/candidates/{cand.id}/merge")
    assert again.status_code == 303
    assert f"Merge candidate {cand.id} is already accepted." in client.get("/duplicates/").get_data(
        as_text=True
    )


def _first_paragraph(html: str) -> str:
    """What the banner script (htmx-errors.js) shows of an answer htmx does not swap."""
    return re.sub(r"<[^>]+>", "", re.search(r"<p\b[^>]*>(.*?)</p>", html, re.S).group(1)).strip()


def test_a_decision_on_a_pair_gone_meanwhile_raises_a_banner_with_its_reason(client, auth, shop):
    """A 404 is not swapped: the banner shows the answer's first paragraph, which must be the
    reason and not "No possible duplicates to review." from the list behind it."""
    auth.login_as(shop)
    for url in ("/duplicates/candidates/987654/reject", "/duplicates/candidates/987654/merge"):
        answer = client.post(url, headers=HX)
        assert answer.status_code == 404
        assert _first_paragraph(answer.get_data(as_text=True)) == "merge candidate 987654 not found"


def test_a_refused_undo_preview_can_be_closed_and_refreshes_the_list(client, auth, shop):
    """A merge whose window closed in the meantime: the preview says why, offers Close, and the
    list behind it no longer offers "Undo…" for it."""
    household(shop.model)
    auth.login_as(shop)
    cand = db.session.query(MergeCandidate).one()
    client.post(f"/duplicates/candidates/{cand.id}/merge", headers=HX)
    merge = db.session.query(Merge).one()
    merge.undo_deadline = dt.datetime(2026, 1, 2, 3, 4, tzinfo=dt.UTC)
    merge.created_at = merge.undo_deadline - dt.timedelta(days=90)
    db.session.commit()
    html = client.get(f"/duplicates/merges/{merge.id}/undo", headers=HX).get_data(as_text=True)
    assert "can no longer be undone" in html and ">Close</button>" in html
    assert html.count('id="review"') == 1 and 'hx-swap-oob="true"' in html
    assert "Undo…" not in html
