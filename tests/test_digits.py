"""Numbers written in text from outside are read as ASCII digits only.

``str.isdigit`` also says yes to "²" (which ``int`` refuses: a 500) and to "٣" (which
``int`` reads as 3); cursors, pages, ids and epoch times used to trust it.
"""

from app.digits import whole_number
from app.services.identifiers import normalise
from tests.gate_helpers import make_profile
from tests.ingest_support import fixture, post_pixel

SUPERSCRIPT_TWO = "\N{SUPERSCRIPT TWO}"
ARABIC_THREE = "\N{ARABIC-INDIC DIGIT THREE}"


def test_only_ascii_digits_make_a_whole_number():
    assert whole_number("0042") == 42
    for text in ("", SUPERSCRIPT_TWO, ARABIC_THREE, "-1", "1.0", " 1"):
        assert whole_number(text) is None, text


def test_a_console_cursor_or_page_in_other_digits_reads_the_first_page_and_the_api_refuses_it(
    client, auth, shop
):
    profile = make_profile(shop.id, "ann@shopper.test", None)
    auth.login_as(shop)
    answer = client.get(f"/api/v1/profiles?q=ann&cursor={SUPERSCRIPT_TWO}", headers=shop.auth)
    assert answer.status_code == 400 and answer.get_json()["error"]["code"] == "bad_cursor"
    assert client.get(f"/customers/?cursor={SUPERSCRIPT_TWO}").status_code == 200
    assert client.get(f"/customers/{profile.id}/timeline?page={SUPERSCRIPT_TWO}").status_code == 200


def test_a_profile_id_or_time_in_other_digits_is_refused_with_a_reason(client, shop):
    body = {"profile_id": SUPERSCRIPT_TWO, "channel": "email"}
    answer = client.post("/api/v1/gate/check", json=body, headers=shop.auth)
    assert (
        answer.status_code == 422 and answer.get_json()["error"]["message"] == "profile_id must be an integer"
    )
    view = {**fixture("pixel/page_viewed.json"), "timestamp": SUPERSCRIPT_TWO}
    answer = post_pixel(client, view)
    assert answer.status_code == 400 and "not an ISO 8601 time" in answer.get_json()["error"]["message"]


def test_a_shopify_customer_id_in_other_digits_is_nobodys():
    assert normalise("shopify_customer", ARABIC_THREE * 4) is None
    assert normalise("shopify_customer", "gid://shopify/Customer/7001").value == "7001"
