"""The API's profile search pages by keyset: rows created or merged between two fetches
neither repeat nor hide a row, and a cursor it did not hand out is a 400, never the start."""

import base64
import json

import pytest

from tests.gate_helpers import make_profile
from tests.helpers import make_shop

PAGE = 25


def _shoppers(shop_id: int, numbers) -> list[int]:
    return [make_profile(shop_id, f"p{n}@shopper.test", None, consents=()).id for n in numbers]


def _search(client, shop, cursor=None):
    query = {"q": "shopper.test", **({"cursor": cursor} if cursor is not None else {})}
    answer = client.get("/api/v1/profiles", query_string=query, headers=shop.auth)
    assert answer.status_code == 200, answer.get_json()
    body = answer.get_json()
    return [p["id"] for p in body["profiles"]], body["next_cursor"]


def _cursor(payload) -> str:
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")


def test_profiles_created_and_merged_between_two_pages_neither_repeat_nor_hide_a_row(client, shop):
    existing = _shoppers(shop.id, range(30))
    first, cursor = _search(client, shop)
    assert first == sorted(existing, reverse=True)[:PAGE] and cursor

    _shoppers(shop.id, range(30, 36))  # newer than every listed row: they sort before the cursor
    merged = client.post(f"/api/v1/profiles/{first[0]}/merge", json={"other_id": first[1]}, headers=shop.auth)
    assert merged.status_code in (200, 201)  # page 1 now holds one live row fewer

    second, after = _search(client, shop, cursor)
    assert second == sorted(existing, reverse=True)[PAGE:] and after is None
    assert not set(first) & set(second)


def test_walking_every_page_lists_each_live_profile_of_the_shop_once(client, shop):
    other = make_shop("beta.myshopify.com")
    mine = []
    for start in range(0, 60, 10):  # the two shops' ids interleave
        mine += _shoppers(shop.id, range(start, start + 10))
        _shoppers(other.id, range(start, start + 3))
    seen, cursor, pages = [], "", 0
    while cursor is not None:
        ids, cursor = _search(client, shop, cursor)
        seen, pages = seen + ids, pages + 1
    assert seen == sorted(mine, reverse=True) and pages == 3


def test_the_cursor_is_opaque_url_safe_text(client, shop):
    _shoppers(shop.id, range(PAGE + 1))
    _, cursor = _search(client, shop)
    assert cursor.replace("-", "").replace("_", "").isalnum() and not cursor.isdigit()


@pytest.mark.parametrize(
    "cursor",
    [
        "abc",
        "-5",
        "1e3",
        "25.5",
        "25",  # an offset, as the API used to hand out
        "0",
        " ",
        "!!",
        "\N{SUPERSCRIPT TWO}",
        "eyJzb3J0IjoicmVjZW50IiwiaWQiOjV9=",  # padding is not part of a cursor
        _cursor({"sort": "recent", "id": "5"}),
        _cursor({"sort": "recent", "id": True}),
        _cursor({"sort": "recent", "id": 0}),
        _cursor({"sort": "recent", "id": 2**64}),
        _cursor({"sort": "ltv", "id": 5}),
        _cursor({"sort": "recent", "id": 5, "offset": 25}),
        _cursor([5]),
        "A" * 400,
    ],
)
def test_a_cursor_the_api_did_not_hand_out_is_a_400_bad_cursor(client, shop, cursor):
    _shoppers(shop.id, range(3))
    query = {"q": "shopper", "cursor": cursor}
    answer = client.get("/api/v1/profiles", query_string=query, headers=shop.auth)
    error = answer.get_json()["error"]
    assert answer.status_code == 400 and error["code"] == "bad_cursor" and "cursor" in error["message"]


def test_an_empty_cursor_reads_the_first_page(client, shop):
    ids = _shoppers(shop.id, range(3))
    assert _search(client, shop, "") == (sorted(ids, reverse=True), None)


def test_openapi_describes_the_cursor_and_its_400(client, db):
    operation = client.get("/api/v1/openapi.json").get_json()["paths"]["/profiles"]["get"]
    (cursor,) = [p for p in operation["parameters"] if p["name"] == "cursor"]
    assert "next_cursor" in cursor["description"]
    assert "bad_cursor" in operation["responses"]["400"]["description"]
